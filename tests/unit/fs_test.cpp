// File stamps and the SIGBUS guard of mapped files (core/fs.h): a file truncated, rewritten or
// replaced under a reader is named, and a read of a mapping whose file shrank ends the process with
// exit 2 and a message naming the file, not a bare "Bus error".
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/fs.h"
#include "test_util.h"

namespace unidiff::fs {
namespace {

void write_bytes(const std::filesystem::path& path, size_t n, char c) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::string bytes(n, c);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(FileStamp, NamesEveryKindOfChange) {
  testing::TempDir dir;
  const auto path = dir / "f.bin";
  write_bytes(path, 800, 'a');
  const FileStamp then = stamp_of(path);
  EXPECT_EQ(then.size, 800);
  EXPECT_EQ(stamp_change(path, then), "");

  std::filesystem::resize_file(path, 0);
  EXPECT_EQ(stamp_change(path, then), "it shrank from 800 to 0 bytes");
  write_bytes(path, 900, 'a');
  EXPECT_EQ(stamp_change(path, then), "it grew from 800 to 900 bytes");

  write_bytes(path, 800, 'b');  // the same size, rewritten: the modification time moves
  const auto later = std::filesystem::last_write_time(path) + std::chrono::seconds(1);
  std::filesystem::last_write_time(path, later);
  EXPECT_EQ(stamp_change(path, then), "it was modified");

  const FileStamp now = stamp_of(path);
  write_bytes(dir / "g.bin", 800, 'b');
  std::filesystem::last_write_time(dir / "g.bin", later);
  std::filesystem::rename(dir / "g.bin", path);  // what `mv new old` or a rewriting tool does
  EXPECT_EQ(stamp_change(path, now), "it was replaced by another file");

  std::filesystem::remove(path);
  EXPECT_EQ(stamp_change(path, now), "it no longer exists");
  EXPECT_THROW(stamp_of(path), InputError);
}

TEST(MappedFileDeathTest, AReadPastATruncationEndsWithExit2NamingTheFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  testing::TempDir dir;
  const auto path = dir / "shrinks.bin";
  write_bytes(path, 1 << 16, 'x');
  MappedFile map(path);
  ASSERT_EQ(map.size(), 1 << 16);
  EXPECT_EQ(map.data()[40000], 'x');
  std::filesystem::resize_file(path, 0);
  EXPECT_EXIT(
      {
        volatile uint8_t v = map.data()[40000];  // the page is gone: SIGBUS
        (void)v;
        std::exit(0);
      },
      ::testing::ExitedWithCode(2), "'.*shrinks.bin' shrank while it was being read \\(SIGBUS\\)");
}

void earlier_sigbus_handler(int, siginfo_t*, void*) {
  const char msg[] = "the earlier SIGBUS handler ran\n";
  const ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  ::_exit(3);
}

TEST(MappedFileDeathTest, ASigbusOutsideTheMappingsGoesToTheEarlierHandler) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: the guard is installed below
  testing::TempDir dir;
  const auto path = dir / "kept.bin";
  write_bytes(path, 4096, 'x');
  EXPECT_EXIT(
      {
        struct sigaction sa {};
        sa.sa_sigaction = earlier_sigbus_handler;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGBUS, &sa, nullptr);
        MappedFile map(path);  // installs the guard over it
        (void)map.data()[0];
        ::raise(SIGBUS);  // no address in a mapping
        std::exit(0);
      },
      ::testing::ExitedWithCode(3), "the earlier SIGBUS handler ran");
}

}  // namespace
}  // namespace unidiff::fs
