#include "image_output.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "text.h"

namespace troy::cli {
namespace {

constexpr uint64_t kMinChunk = 4 << 20;

bool ends_with_lower(std::string text, const std::string& suffix) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text.ends_with(suffix);
}

// --block-size as given, or 0 (the format's default) when it was not.
Result<uint64_t> block_size_option(const std::string& text) {
  if (text.empty()) return uint64_t{0};
  return parse_size(text, "--block-size");
}

}  // namespace

void add_image_output_options(CLI::App& command, ImageOutputOptions& options, bool base_image) {
  command.add_option("-f,--format", options.format, "Image format (default: from OUT's extension: .vhd, .vhdx, .avhdx)")
      ->check(CLI::IsMember({"vhd", "vhdx"}));
  if (base_image) {
    command.add_option("--type", options.type, "fixed or dynamic (default dynamic)")
        ->check(CLI::IsMember({"fixed", "dynamic"}));
    command.add_option("--sector-size", options.sector_size, "Logical sector size, 512 or 4096 (VHDX only)")
        ->check(CLI::IsMember({512, 4096}));
  }
  command.add_option("--block-size", options.block_size,
                     "Block size, e.g. 2M (default as Hyper-V: VHD 2M; VHDX 32M, differencing 2M)");
  command.add_flag("--overwrite", options.overwrite, "Replace OUT if it exists");
}

Result<ImageFormat> output_format(const std::string& out, const std::string& format_flag) {
  if (format_flag == "vhd") return ImageFormat::Vhd;
  if (format_flag == "vhdx") return ImageFormat::Vhdx;
  if (ends_with_lower(out, ".vhd")) return ImageFormat::Vhd;
  if (ends_with_lower(out, ".vhdx") || ends_with_lower(out, ".avhdx")) return ImageFormat::Vhdx;
  return Error{fmt::format("{}: cannot tell the format from the name; end it in .vhd, .vhdx or .avhdx, or give -f vhd|vhdx",
                           out)};
}

Result<ImageSpec> base_spec(const ImageOutputOptions& options, const std::string& out, uint64_t virtual_size,
                            uint32_t default_sector_size) {
  ImageSpec spec;
  TROY_ASSIGN(format, output_format(out, options.format));
  spec.format = format;
  spec.type = options.type == "fixed" ? ImageType::Fixed : ImageType::Dynamic;
  spec.virtual_size = virtual_size;
  spec.logical_sector_size = options.sector_size != 0 ? options.sector_size : default_sector_size;
  TROY_ASSIGN(block_size, block_size_option(options.block_size));
  spec.block_size = block_size;
  return complete_spec(spec);
}

Result<ParentRecord> parent_record(const std::string& parent, const std::string& out, const Guid& link_id) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path parent_path = fs::weakly_canonical(fs::absolute(parent), error);
  if (error) return Error{fmt::format("{}: cannot resolve the path: {}", parent, error.message())};
  const fs::path out_folder = fs::weakly_canonical(fs::absolute(out), error).parent_path();
  if (error) return Error{fmt::format("{}: cannot resolve the path: {}", out, error.message())};
  struct stat st {};
  if (::stat(parent_path.c_str(), &st) != 0) return Error{fmt::format("{}: cannot stat the parent", parent)};
  ParentRecord record;
  record.link_id = link_id;
  record.absolute_path = parent_path.string();
  record.relative_path = parent_path.lexically_relative(out_folder).string();
  record.modified_unix = st.st_mtime;
  return record;
}

Result<ImageSpec> child_spec(const ChildRequest& request, const Chain& chain) {
  const ImageFormat parent_format = chain.top().info().format == "vhd" ? ImageFormat::Vhd : ImageFormat::Vhdx;
  auto named = output_format(request.out, request.format_flag);
  const ImageFormat format = named ? *named : parent_format;  // no known extension: the parent's format
  if (format != parent_format)
    return Error{fmt::format("{}: a {} image can only have a {} child (name it .{})", request.parent,
                             format_name(parent_format), format_name(parent_format),
                             parent_format == ImageFormat::Vhd ? "vhd" : "avhdx")};
  ImageSpec spec;
  spec.format = format;
  spec.type = ImageType::Differencing;
  spec.logical_sector_size = chain.logical_sector_size();
  spec.virtual_size = request.virtual_size == 0 ? chain.virtual_size() : request.virtual_size;
  if (spec.virtual_size < chain.virtual_size())
    return Error{fmt::format("{}: {} bytes is smaller than {}'s virtual disk of {} bytes; a child cannot shrink the "
                             "disk", request.size_source, spec.virtual_size, request.parent, chain.virtual_size())};
  TROY_ASSIGN(block_size, block_size_option(request.block_size));
  spec.block_size = block_size;
  TROY_ASSIGN(record, parent_record(request.parent, request.out, chain.top().link_id()));
  spec.parent = record;
  return complete_spec(spec);
}

Result<std::unique_ptr<NewImage>> NewImage::create(const std::string& path, const ImageSpec& spec, bool overwrite,
                                                   const std::vector<std::string>& inputs) {
  if (path == "-") return Error{"an image cannot be written to standard output; give a file name"};
  TROY_ASSIGN(out, OutputFile::create(path, overwrite, inputs));
  std::unique_ptr<NewImage> image(new NewImage(std::move(out), spec));
  TROY_ASSIGN(writer, create_image(spec, image->out_));
  image->writer_ = std::move(writer);
  return image;
}

Result<void> NewImage::commit() {
  TROY_TRY(writer_->finish());
  return out_.commit();
}

Result<StoreStats> store_nonzero_blocks(ImageWriter& writer, uint64_t virtual_size, const ChunkReader& read,
                                        Progress& progress) {
  const uint64_t block = writer.block_size();
  AlignedBuffer buffer(chunk_size_for(writer));
  StoreStats stats;
  for (uint64_t offset = 0; offset < virtual_size; offset += buffer.size) {
    const auto chunk = buffer.span().first(std::min<uint64_t>(buffer.size, virtual_size - offset));
    TROY_ASSIGN(has_data, read(offset, chunk));
    if (has_data) stats.bytes_read += chunk.size();
    for (uint64_t at = 0; at < chunk.size(); at += block) {
      const auto piece = chunk.subspan(at, std::min<uint64_t>(block, chunk.size() - at));
      if (!has_data || all_zero(piece)) {
        stats.zero_blocks_skipped++;
        continue;
      }
      TROY_TRY(writer.write(offset + at, piece));
      stats.blocks_stored++;
      stats.bytes_stored += piece.size();
    }
    progress.update(offset + chunk.size());
  }
  progress.finish();
  return stats;
}

uint64_t chunk_size_for(const ImageWriter& writer) { return std::max(writer.block_size(), kMinChunk); }

}  // namespace troy::cli
