// A test driver for the in-place updaters (libvhd/updater.h), which have no
// command of their own until merge: applies a script of writes to an image,
// or the same script to a raw file (the expected result: plain pwrite).
//
//   troy_update_tool image IMAGE SCRIPT
//   troy_update_tool raw RAW SCRIPT
//
// SCRIPT lines: "write OFFSET LENGTH SEED" (deterministic bytes from SEED),
// "zero OFFSET LENGTH", "commit". The image is closed at the end.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "image.h"
#include "updater.h"

namespace {

struct Step {
  std::string op;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t seed = 0;
};

std::vector<std::byte> bytes_for(uint64_t length, uint64_t seed) {
  std::vector<std::byte> out(length);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return out;
}

int die(const std::string& message) {
  std::fprintf(stderr, "troy_update_tool: %s\n", message.c_str());
  return 2;
}

int run_image(const std::string& path, const std::vector<Step>& steps) {
  auto updater = troy::open_for_update(path);
  if (!updater) return die(updater.error().message);
  for (const Step& step : steps) {
    troy::Result<void> done;
    if (step.op == "write") done = (*updater)->write(step.offset, bytes_for(step.length, step.seed));
    else if (step.op == "zero") done = (*updater)->write_zeros(step.offset, step.length);
    else done = (*updater)->commit();
    if (!done) return die(done.error().message);
  }
  if (auto closed = (*updater)->close(); !closed) return die(closed.error().message);
  std::fprintf(stderr, "troy_update_tool: %zu steps, %llu blocks allocated\n", steps.size(),
               static_cast<unsigned long long>((*updater)->blocks_allocated()));
  return 0;
}

int run_raw(const std::string& path, const std::vector<Step>& steps) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return die(path + ": cannot open");
  for (const Step& step : steps) {
    if (step.op == "commit") continue;
    const auto data = step.op == "write" ? bytes_for(step.length, step.seed) : std::vector<std::byte>(step.length);
    if (::pwrite(fd, data.data(), data.size(), static_cast<off_t>(step.offset)) != static_cast<ssize_t>(data.size()))
      return die(path + ": write failed");
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return die("usage: troy_update_tool image|raw FILE SCRIPT");
  std::ifstream script(argv[3]);
  std::vector<Step> steps;
  for (std::string line; std::getline(script, line);) {
    std::istringstream fields(line);
    Step step;
    if (!(fields >> step.op)) continue;
    fields >> step.offset >> step.length >> step.seed;
    if (step.op != "write" && step.op != "zero" && step.op != "commit") return die("bad script line: " + line);
    steps.push_back(step);
  }
  const std::string mode = argv[1];
  return mode == "image" ? run_image(argv[2], steps) : run_raw(argv[2], steps);
}
