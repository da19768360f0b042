#include "vhd.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "layout.h"
#include "text.h"
#include "vhd_format.h"

namespace troy::vhd {
namespace {

constexpr uint64_t kMinBlockSize = 512;
constexpr uint64_t kMaxBlockSize = 256ull << 20;

std::string four_cc(const char (&code)[4]) {
  std::string text(code, 4);
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return text;
}

std::string four_cc(uint32_t code) {
  const char chars[4] = {static_cast<char>(code >> 24), static_cast<char>(code >> 16),
                         static_cast<char>(code >> 8), static_cast<char>(code)};
  return four_cc(chars);
}

std::string vhd_time(uint32_t timestamp) {
  const std::time_t unix_time = static_cast<std::time_t>(timestamp) + kVhdEpoch;
  std::tm utc{};
  gmtime_r(&unix_time, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string format_uuid(const Guid& id) {
  const std::string hex = to_hex(id);
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                     hex.substr(20));
}

bool footer_cookie_ok(const Footer& footer) { return std::memcmp(footer.cookie, kFooterCookie, 8) == 0; }
bool footer_checksum_ok(const Footer& footer) {
  return checksum(bytes_of(footer), kFooterChecksumOffset) == footer.checksum;
}

// A footer as found in the file: where, and whether it is intact.
struct FooterCopy {
  Footer footer{};
  uint64_t offset = 0;
  bool present = false;  // the cookie is there
  bool intact = false;   // and the checksum matches
};

// Reads the footer at `offset`, tolerating a missing one.
FooterCopy read_footer_at(const Source& source, uint64_t offset, size_t length) {
  FooterCopy copy;
  copy.offset = offset;
  if (offset + length > source.size()) return copy;
  if (!source.read_at(offset, std::as_writable_bytes(std::span(&copy.footer, 1)).first(length)).ok()) return copy;
  copy.present = footer_cookie_ok(copy.footer);
  copy.intact = copy.present && footer_checksum_ok(copy.footer);
  return copy;
}

bool locator_is_relative(uint32_t code) { return code == kW2ru; }

// Preference order when looking for the parent: relative paths first.
int locator_rank(uint32_t code) {
  switch (code) {
    case kW2ru: return 0;
    case kW2ku: return 1;
    case kMacX: return 2;
    default: return 9;
  }
}

// Turns a MacX "file://host/path" URL into a path, undoing %XX escapes.
std::string file_url_to_path(const std::string& url) {
  std::string rest = url;
  if (rest.rfind("file://", 0) == 0) {
    rest = rest.substr(7);
    const size_t slash = rest.find('/');
    rest = slash == std::string::npos ? "" : rest.substr(slash);
  }
  std::string out;
  for (size_t i = 0; i < rest.size(); i++) {
    if (rest[i] == '%' && i + 2 < rest.size() && std::isxdigit(static_cast<unsigned char>(rest[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(rest[i + 2]))) {
      out += static_cast<char>(std::stoi(rest.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += rest[i];
    }
  }
  return out;
}

class VhdLayer final : public Layer {
 public:
  VhdLayer(std::unique_ptr<Source> source, const Footer& footer, uint64_t footer_length)
      : source_(std::move(source)), footer_(footer), footer_length_(footer_length) {}

  Result<void> load(const OpenOptions& options, bool footer_from_copy);

  const std::string& path() const override { return source_->name(); }
  uint64_t virtual_size() const override { return footer_.current_size; }
  uint32_t logical_sector_size() const override { return kSectorSize; }
  const ParentLink* parent_link() const override { return is_differencing() ? &parent_ : nullptr; }
  Guid link_id() const override {
    Guid id;
    std::memcpy(id.data(), footer_.unique_id, id.size());
    return id;
  }
  std::string format_id(const Guid& id) const override { return format_uuid(id); }
  Result<void> extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const override;
  Result<void> read(uint64_t offset, std::span<std::byte> out) const override;
  LayerInfo info() const override;
  FileLayout layout() const;

 private:
  bool is_fixed() const { return footer_.disk_type == kFixed; }
  bool is_differencing() const { return footer_.disk_type == kDifferencing; }
  uint64_t block_count() const { return ceil_div(virtual_size(), block_size_); }
  uint64_t block_file_offset(uint64_t block) const { return uint64_t{bat_[block]} * kSectorSize; }
  bool allocated(uint64_t block) const { return bat_[block] != kUnallocated; }
  std::string where(const char* field) const { return fmt::format("{}: {}", path(), field); }

  Result<void> load_header(const OpenOptions& options);
  Result<void> load_bat(Diagnostics& diagnostics);
  Result<void> load_parent_link(Diagnostics& diagnostics);
  Result<void> check_layout(Diagnostics& diagnostics);
  Result<std::vector<std::byte>> read_bitmap(uint64_t block) const;
  void append_bitmap_runs(const std::vector<std::byte>& bitmap, uint64_t block_start, uint64_t first, uint64_t last,
                          std::vector<Extent>& out) const;

  std::unique_ptr<Source> source_;
  Footer footer_;
  uint64_t footer_length_;  // 512, or 511 in files from Virtual PC before 2004
  DynamicHeader header_{};
  bool footer_from_copy_ = false;
  uint64_t block_size_ = 0;
  uint64_t bitmap_size_ = 0;
  std::vector<uint32_t> bat_;
  ParentLink parent_;
  std::vector<InfoDetail> locator_details_;
};

Result<void> VhdLayer::load(const OpenOptions& options, bool footer_from_copy) {
  Diagnostics& diagnostics = *options.diagnostics;
  footer_from_copy_ = footer_from_copy;
  const uint32_t type = footer_.disk_type;
  if (type != kFixed && type != kDynamic && type != kDifferencing)
    return Error{fmt::format("{}: Disk Type {} is not fixed (2), dynamic (3) or differencing (4)", path(), type)};
  if (footer_.current_size > kMaxDiskSize)
    return Error{fmt::format("{}: Current Size {} is larger than the VHD maximum of 2040 GiB", path(),
                             uint64_t{footer_.current_size})};
  if (footer_.current_size % kSectorSize != 0)
    diagnostics.note(fmt::format("{}: Current Size {} is not a multiple of 512", path(), uint64_t{footer_.current_size}));
  if (footer_.file_format_version >> 16 != 1)
    return Error{fmt::format("{}: footer File Format Version {:#010x}: only major version 1 is known", path(),
                             uint32_t{footer_.file_format_version})};
  if ((footer_.features & 2u) == 0)
    diagnostics.note(where("Features: the reserved bit 0x2 that must always be set is clear"));
  if (footer_.saved_state != 0)
    diagnostics.note(where("Saved State is set: the virtual machine was suspended and may still change this disk"));
  if (is_fixed()) {
    if (source_->size() < footer_.current_size + footer_length_)
      return Error{fmt::format("{}: truncated: a fixed disk of Current Size {} needs {} bytes, the file has {}",
                               path(), uint64_t{footer_.current_size}, footer_.current_size + footer_length_,
                               source_->size())};
    return success();
  }
  TROY_TRY(load_header(options));
  TROY_TRY(load_bat(diagnostics));
  if (is_differencing()) TROY_TRY(load_parent_link(diagnostics));
  return check_layout(diagnostics);
}

Result<void> VhdLayer::load_header(const OpenOptions& options) {
  Diagnostics& diagnostics = *options.diagnostics;
  const uint64_t offset = footer_.data_offset;
  if (offset == kNoDataOffset || !inside_file(source_->size(), offset, sizeof(DynamicHeader)))
    return Error{fmt::format("{}: Data Offset {:#x}: no room for the dynamic header in a file of {} bytes", path(),
                             offset, source_->size())};
  TROY_ASSIGN(header, read_struct<DynamicHeader>(*source_, offset));
  header_ = header;
  if (std::memcmp(header_.cookie, kMergeInProgressCookie, 8) == 0 && !options.merge_in_progress_ok)
    return Error{fmt::format("{}: a troy merge into this image is unfinished (dynamic header cookie 'troymrge'): its "
                             "content is partly merged; run the same troy merge again to finish it", path())};
  if (std::memcmp(header_.cookie, kHeaderCookie, 8) != 0 && std::memcmp(header_.cookie, kMergeInProgressCookie, 8) != 0)
    return Error{fmt::format("{}: dynamic header at offset {:#x}: cookie is not 'cxsparse'", path(), offset)};
  const uint32_t computed = checksum(bytes_of(header_), kHeaderChecksumOffset);
  if (computed != header_.checksum) {
    std::string message = fmt::format("{}: dynamic header Checksum {:#010x} does not match the computed {:#010x}",
                                      path(), uint32_t{header_.checksum}, computed);
    if (options.ignore_checksums) diagnostics.warnings.push_back(message + " (ignored)");
    else TROY_TRY(diagnostics.problem(message + " (use --ignore-checksums to read anyway)"));
  }
  if (header_.header_version >> 16 != 1)
    return Error{fmt::format("{}: dynamic header Header Version {:#010x}: only major version 1 is known", path(),
                             uint32_t{header_.header_version})};
  block_size_ = header_.block_size;
  if (!std::has_single_bit(block_size_) || block_size_ < kMinBlockSize || block_size_ > kMaxBlockSize)
    return Error{fmt::format("{}: Block Size {} is not a power of two between 512 bytes and 256 MiB", path(),
                             block_size_)};
  bitmap_size_ = bitmap_bytes_for(block_size_);
  if (header_.max_table_entries < block_count())
    return Error{fmt::format("{}: Max Table Entries {} is too small for Current Size {} (needs {} blocks of {})",
                             path(), uint32_t{header_.max_table_entries}, uint64_t{footer_.current_size},
                             block_count(), block_size_)};
  return success();
}

Result<void> VhdLayer::load_bat(Diagnostics& diagnostics) {
  const uint64_t offset = header_.table_offset;
  const uint64_t entries = header_.max_table_entries;
  if (!inside_file(source_->size(), offset, entries * 4))
    return Error{fmt::format("{}: BAT: Table Offset {:#x} with {} entries extends past the end of the file ({} bytes)",
                             path(), offset, entries, source_->size())};
  // Only the entries that cover the virtual disk matter for reading.
  std::vector<ub32> raw(block_count());
  TROY_TRY(source_->read_at(offset, std::as_writable_bytes(std::span(raw))));
  bat_.assign(raw.begin(), raw.end());
  const uint64_t data_end = source_->size() - footer_length_;
  for (uint64_t block = 0; block < bat_.size(); block++) {
    if (!allocated(block)) continue;
    // The bitmap and the part of the block inside the virtual disk must be in the file.
    const uint64_t used = std::min(block_size_, virtual_size() - block * block_size_);
    const uint64_t end = block_file_offset(block) + bitmap_size_ + round_up(used, kSectorSize);
    if (end > data_end) {
      TROY_TRY(diagnostics.problem(fmt::format(
          "{}: BAT entry {} points to sector {} (offset {:#x}); the block ends at {:#x}, past the end of the "
          "image data at {:#x}",
          path(), block, bat_[block], block_file_offset(block), end, data_end)));
      bat_[block] = kUnallocated;  // keep collecting; never read outside the file
    }
  }
  return success();
}

Result<void> VhdLayer::load_parent_link(Diagnostics& diagnostics) {
  std::memcpy(parent_.expected_id.data(), header_.parent_unique_id, 16);
  parent_.expected_id_field = "Parent Unique ID";
  parent_.parent_id_field = "footer Unique Id";
  parent_.parent_time = vhd_time(header_.parent_timestamp);
  parent_.parent_name = utf16_to_utf8(std::as_bytes(std::span(header_.parent_unicode_name)), true);
  std::vector<std::pair<int, ParentLocator>> ranked;
  for (int i = 0; i < 8; i++) {
    const ParentLocatorEntry& entry = header_.parent_locators[i];
    const uint32_t code = entry.platform_code;
    if (code == kNone) continue;
    const uint64_t offset = entry.platform_data_offset;
    const uint64_t length = entry.platform_data_length;
    const uint64_t space = locator_space_bytes(entry.platform_data_space);
    locator_details_.push_back(InfoDetail{
        "parent_locator",
        fmt::format("{} at {:#x}, {} bytes (space field {})", four_cc(code), offset, length,
                    uint32_t{entry.platform_data_space}),
        {{"platform_code", four_cc(code)},
         {"offset", offset},
         {"length_bytes", length},
         {"space_field", uint64_t{entry.platform_data_space}}}});
    if (!inside_file(source_->size(), offset, length) || length > 64 * 1024) {
      TROY_TRY(diagnostics.problem(fmt::format("{}: parent locator {} ({}): data at {:#x}, {} bytes, is outside the file",
                                               path(), i, four_cc(code), offset, length)));
      continue;
    }
    if (length > space)
      TROY_TRY(diagnostics.problem(fmt::format("{}: parent locator {} ({}): Platform Data Length {} exceeds its "
                                               "Platform Data Space of {} bytes",
                                               path(), i, four_cc(code), length, space)));
    std::vector<std::byte> data(length);
    TROY_TRY(source_->read_at(offset, data));
    ParentLocator locator{four_cc(code), "", locator_is_relative(code)};
    if (code == kW2ru || code == kW2ku) locator.path = utf16_to_utf8(data, false);
    else if (code == kMacX) locator.path = file_url_to_path(std::string(reinterpret_cast<const char*>(data.data()), data.size()));
    else continue;  // Mac alias blobs and the deprecated Wi2r/Wi2k (encoding unknown) are not used
    locator.path = locator.path.substr(0, locator.path.find('\0'));
    if (!locator.path.empty()) ranked.emplace_back(locator_rank(code), std::move(locator));
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [rank, locator] : ranked) parent_.locators.push_back(std::move(locator));
  return success();
}

Result<void> VhdLayer::check_layout(Diagnostics& diagnostics) {
  std::vector<Interval> used;
  used.push_back({0, kFooterSize, "footer copy"});
  used.push_back({footer_.data_offset, footer_.data_offset + sizeof(DynamicHeader), "dynamic header"});
  used.push_back({header_.table_offset, header_.table_offset + round_up(uint64_t{header_.max_table_entries} * 4, kSectorSize),
                  "BAT"});
  for (int i = 0; is_differencing() && i < 8; i++) {
    const ParentLocatorEntry& entry = header_.parent_locators[i];
    if (entry.platform_code == kNone || entry.platform_data_length == 0) continue;
    const uint64_t start = entry.platform_data_offset;
    used.push_back({start, start + entry.platform_data_length, fmt::format("parent locator {}", i)});
  }
  for (uint64_t block = 0; block < bat_.size(); block++)
    if (allocated(block)) {
      const uint64_t start = block_file_offset(block);
      used.push_back({start, start + bitmap_size_ + block_size_, fmt::format("block {}", block)});
    }
  return report_overlaps(std::move(used), where("layout"), diagnostics);
}

Result<std::vector<std::byte>> VhdLayer::read_bitmap(uint64_t block) const {
  std::vector<std::byte> bitmap(bitmap_size_);
  TROY_TRY(source_->read_at(block_file_offset(block), bitmap));
  return bitmap;
}

// Appends the runs of set bits (MSB first: bit 7 of byte 0 is the block's
// first sector) that fall inside [from, to) of the block at block_start.
void VhdLayer::append_bitmap_runs(const std::vector<std::byte>& bitmap, uint64_t block_start, uint64_t from,
                                  uint64_t to, std::vector<Extent>& out) const {
  auto bit = [&](uint64_t sector) {
    return ((static_cast<unsigned>(bitmap[sector / 8]) >> (7 - sector % 8)) & 1u) != 0;
  };
  append_set_runs(BitmapWindow{block_start, kSectorSize, from, to}, bit, out);
}

Result<void> VhdLayer::extents(uint64_t offset, uint64_t length, std::vector<Extent>& out) const {
  const uint64_t end = std::min(offset + length, virtual_size());
  if (offset >= end) return success();
  if (is_fixed()) {
    out.push_back({offset, end - offset, ExtentKind::Data});
    return success();
  }
  for (uint64_t block = offset / block_size_; block * block_size_ < end; block++) {
    if (!allocated(block)) continue;
    const uint64_t block_start = block * block_size_;
    const uint64_t from = std::max(offset, block_start);
    const uint64_t to = std::min(end, block_start + block_size_);
    if (!is_differencing()) {
      // Dynamic disks: an allocated block is read whole, as qemu and
      // Windows do; the bitmap is not consulted.
      append_extent(out, from, to, ExtentKind::Data);
      continue;
    }
    TROY_ASSIGN(bitmap, read_bitmap(block));
    append_bitmap_runs(bitmap, block_start, from, to, out);
  }
  return success();
}

Result<void> VhdLayer::read(uint64_t offset, std::span<std::byte> out) const {
  if (is_fixed()) {
    const uint64_t inside = offset >= virtual_size() ? 0 : std::min<uint64_t>(out.size(), virtual_size() - offset);
    TROY_TRY(source_->read_at(offset, out.first(inside)));
    std::memset(out.data() + inside, 0, out.size() - inside);
    return success();
  }
  while (!out.empty()) {
    const uint64_t block = offset / block_size_;
    const uint64_t within = offset % block_size_;
    const size_t count = std::min<uint64_t>(out.size(), block_size_ - within);
    if (block < bat_.size() && allocated(block))
      TROY_TRY(source_->read_at(block_file_offset(block) + bitmap_size_ + within, out.first(count)));
    else
      std::memset(out.data(), 0, count);
    out = out.subspan(count);
    offset += count;
  }
  return success();
}

LayerInfo VhdLayer::info() const {
  LayerInfo info;
  info.format = "vhd";
  info.type = is_fixed() ? "fixed" : is_differencing() ? "differencing" : "dynamic";
  info.virtual_size = virtual_size();
  info.block_size = block_size_;
  info.file_size = source_->size();
  info.creator = fmt::format("{} {:#x} on {}", four_cc(footer_.creator_app), uint32_t{footer_.creator_version},
                             four_cc(footer_.creator_host_os));
  info.id = format_uuid(link_id());
  if (is_fixed()) {
    info.allocated_bytes = virtual_size();
  } else {
    for (uint64_t block = 0; block < bat_.size(); block++)
      if (allocated(block)) info.allocated_blocks++;
    info.allocated_bytes = info.allocated_blocks * block_size_;
  }
  auto& d = info.details;
  d.push_back(info_detail("timestamp", vhd_time(footer_.timestamp), vhd_time(footer_.timestamp)));
  d.push_back(info_detail("original_size", std::to_string(uint64_t{footer_.original_size}),
                          uint64_t{footer_.original_size}));
  d.push_back(InfoDetail{"geometry_chs",
                         fmt::format("{}/{}/{}", uint16_t{footer_.cylinders}, footer_.heads, footer_.sectors_per_track),
                         {{"cylinders", uint64_t{footer_.cylinders}},
                          {"heads", uint64_t{footer_.heads}},
                          {"sectors_per_track", uint64_t{footer_.sectors_per_track}}}});
  d.push_back(info_detail("features", fmt::format("{:#x}", uint32_t{footer_.features}), uint64_t{footer_.features}));
  d.push_back(info_detail("saved_state", std::to_string(footer_.saved_state), footer_.saved_state != 0));
  if (footer_from_copy_) {
    const std::string footer = "damaged at end of file; read from the copy at offset 0";
    d.push_back(info_detail("footer", footer, footer));
  }
  if (!is_fixed()) {
    d.push_back(info_detail("bat_offset", fmt::format("{:#x}", uint64_t{header_.table_offset}),
                            uint64_t{header_.table_offset}));
    d.push_back(info_detail("max_table_entries", std::to_string(uint32_t{header_.max_table_entries}),
                            uint64_t{header_.max_table_entries}));
    d.push_back(info_detail("sector_bitmap_bytes", std::to_string(bitmap_size_), uint64_t{bitmap_size_}));
  }
  if (is_differencing()) {
    const std::string parent_id = format_uuid(parent_.expected_id);
    d.push_back(info_detail("parent_unique_id", parent_id, parent_id));
    d.push_back(info_detail("parent_timestamp", vhd_time(header_.parent_timestamp), vhd_time(header_.parent_timestamp)));
    d.push_back(info_detail("parent_unicode_name", parent_.parent_name, parent_.parent_name));
    d.insert(d.end(), locator_details_.begin(), locator_details_.end());
  }
  return info;
}

}  // namespace

FileLayout VhdLayer::layout() const {
  FileLayout layout;
  layout.footer = footer_;
  layout.header = header_;
  layout.bat = bat_;
  layout.block_size = block_size_;
  layout.bitmap_size = bitmap_size_;
  layout.end_footer_intact = !footer_from_copy_;
  layout.footer_offset = source_->size() - footer_length_;
  uint64_t end = is_fixed() ? uint64_t{footer_.current_size} : uint64_t{footer_.data_offset} + sizeof(DynamicHeader);
  if (!is_fixed()) {
    end = std::max(end, header_.table_offset + round_up(uint64_t{header_.max_table_entries} * 4, kSectorSize));
    for (const ParentLocatorEntry& entry : header_.parent_locators)
      if (is_differencing() && entry.platform_code != kNone)
        end = std::max(end, entry.platform_data_offset +
                                std::max<uint64_t>(entry.platform_data_length, locator_space_bytes(entry.platform_data_space)));
    for (uint64_t block = 0; block < bat_.size(); block++)
      if (allocated(block)) end = std::max(end, block_file_offset(block) + bitmap_size_ + block_size_);
  }
  layout.structures_end = end;
  return layout;
}

uint32_t checksum(std::span<const std::byte> structure, size_t checksum_offset) {
  uint32_t sum = 0;
  for (size_t i = 0; i < structure.size(); i++)
    if (i < checksum_offset || i >= checksum_offset + 4) sum += static_cast<uint8_t>(structure[i]);
  return ~sum;
}

bool probe(const Source& source) {
  if (source.size() < kFooterSize) return false;
  return read_footer_at(source, source.size() - kFooterSize, kFooterSize).present ||
         read_footer_at(source, 0, kFooterSize).present ||
         read_footer_at(source, source.size() - (kFooterSize - 1), kFooterSize - 1).present;
}

namespace {

Result<std::unique_ptr<VhdLayer>> open_vhd(std::unique_ptr<Source> source, const OpenOptions& options) {
  Diagnostics& diagnostics = *options.diagnostics;
  const std::string name = source->name();
  if (source->size() < kFooterSize)
    return Error{fmt::format("{}: file of {} bytes is too small to hold a VHD footer", name, source->size())};
  FooterCopy end = read_footer_at(*source, source->size() - kFooterSize, kFooterSize);
  if (!end.present) {
    // Virtual PC before 2004 wrote a 511-byte footer.
    FooterCopy short_footer = read_footer_at(*source, source->size() - (kFooterSize - 1), kFooterSize - 1);
    if (short_footer.present) end = short_footer;
  }
  const FooterCopy start = read_footer_at(*source, 0, kFooterSize);
  const bool start_is_copy = start.present && start.footer.disk_type != kFixed;
  if (!end.present && !start_is_copy)
    return Error{fmt::format("{}: footer: no 'conectix' cookie at the end of the file or at offset 0: not a VHD", name)};

  const FooterCopy* chosen = end.present ? &end : &start;
  if (!end.intact) {
    const std::string what = end.present ? fmt::format("Checksum {:#010x} does not match the computed {:#010x}",
                                                       uint32_t{end.footer.checksum},
                                                       checksum(bytes_of(end.footer), kFooterChecksumOffset))
                                         : std::string("cookie 'conectix' is missing");
    const std::string message = fmt::format("{}: footer at end of file: {}", name, what);
    if (start_is_copy && start.intact) {
      // The spec keeps the copy at offset 0 for exactly this repair.
      chosen = &start;
      diagnostics.note(message + "; read from the intact copy at offset 0");
    } else if (options.ignore_checksums) {
      diagnostics.warnings.push_back(message + " (ignored)");
    } else {
      TROY_TRY(diagnostics.problem(message + " (use --ignore-checksums to read anyway)"));
    }
  } else if (start_is_copy && std::memcmp(&start.footer, &end.footer, kFooterSize) != 0) {
    diagnostics.note(fmt::format("{}: footer copy at offset 0 differs from the footer at the end of the file{}; "
                                 "using the one at the end",
                                 name, start.intact ? "" : " (its checksum is wrong)"));
  }
  const bool from_copy = chosen == &start;
  const uint64_t footer_length = chosen == &end ? source->size() - end.offset : kFooterSize;
  auto layer = std::make_unique<VhdLayer>(std::move(source), chosen->footer, footer_length);
  TROY_TRY(layer->load(options, from_copy));
  return layer;
}

}  // namespace

Result<std::unique_ptr<Layer>> open(std::unique_ptr<Source> source, const OpenOptions& options) {
  TROY_ASSIGN(layer, open_vhd(std::move(source), options));
  return std::unique_ptr<Layer>(std::move(layer));
}

Result<FileLayout> read_layout(std::unique_ptr<Source> source, const OpenOptions& options) {
  TROY_ASSIGN(layer, open_vhd(std::move(source), options));
  return layer->layout();
}

}  // namespace troy::vhd
