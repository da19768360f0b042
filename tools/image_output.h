// What create, capture, diff and convert share: the options that describe a
// new image, how its format is chosen, and writing it safely (an unnamed
// file, named only once complete and flushed; see output.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include <CLI/CLI.hpp>

#include "chain.h"
#include "output.h"
#include "progress.h"
#include "buffers.h"
#include "files.h"
#include "writer.h"

namespace troy::cli {

struct ImageOutputOptions {
  std::string format;      // -f: "vhd", "vhdx", or empty for OUT's extension
  std::string type;        // --type: "fixed" or "dynamic"; empty for the default
  std::string block_size;  // --block-size, e.g. "2M"; empty for Hyper-V's default
  uint32_t sector_size = 0;  // --sector-size; 0 for the default (512, or the source's)
  bool overwrite = false;
};

// -f, --block-size, --overwrite; --type and --sector-size where they apply.
void add_image_output_options(CLI::App& command, ImageOutputOptions& options, bool base_image);


// The format -f names, else the one OUT's extension names (.vhd; .vhdx or .avhdx).
Result<ImageFormat> output_format(const std::string& out, const std::string& format_flag);

// The spec of a new base (fixed or dynamic) image from the options.
Result<ImageSpec> base_spec(const ImageOutputOptions& options, const std::string& out, uint64_t virtual_size,
                            uint32_t default_sector_size);

// What a differencing image needs to record about PARENT, to be written at OUT.
Result<ParentRecord> parent_record(const std::string& parent, const std::string& out, const Guid& link_id);

// The spec of a new differencing child of the chain whose top is `parent`,
// to be written at `out`: the parent's format and sector size, at least its
// virtual size.
struct ChildRequest {
  std::string parent;
  std::string out;
  std::string format_flag;
  std::string block_size;
  uint64_t virtual_size = 0;  // 0: the parent's
  std::string size_source;    // names what gave virtual_size, for errors ("--size 1G", "NEW.raw")
};
Result<ImageSpec> child_spec(const ChildRequest& request, const Chain& chain);

// A new image being written: OUT stays untouched until commit().
class NewImage {
 public:
  static Result<std::unique_ptr<NewImage>> create(const std::string& path, const ImageSpec& spec, bool overwrite,
                                                  const std::vector<std::string>& inputs);
  ImageWriter& writer() { return *writer_; }
  const ImageSpec& spec() const { return spec_; }
  // Finishes the metadata, flushes, and gives the file its name.
  Result<void> commit();

 private:
  NewImage(OutputFile out, ImageSpec spec) : out_(std::move(out)), spec_(std::move(spec)) {}
  OutputFile out_;
  ImageSpec spec_;
  std::unique_ptr<ImageWriter> writer_;
};


// Counts for the summary line.
struct StoreStats {
  uint64_t bytes_read = 0;
  uint64_t blocks_stored = 0;
  uint64_t bytes_stored = 0;
  uint64_t zero_blocks_skipped = 0;
};

// Fills `chunk` with the virtual disk's bytes at `offset`; returns false when
// the range is known to be all zeros without reading it.
using ChunkReader = std::function<Result<bool>(uint64_t offset, std::span<std::byte> chunk)>;

// Reads the whole virtual disk in large chunks and stores every block that is
// not all zeros; zero blocks are left unallocated.
Result<StoreStats> store_nonzero_blocks(ImageWriter& writer, uint64_t virtual_size, const ChunkReader& read,
                                        Progress& progress);

// The read unit for a writer: whole blocks, at least 4 MiB.
uint64_t chunk_size_for(const ImageWriter& writer);

}  // namespace troy::cli
