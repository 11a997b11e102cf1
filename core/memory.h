// Host memory: how the process's allocator treats the tensors a step frees and allocates again.
#pragma once

namespace unidiff::memory {

/// Keeps freed host memory in the process for the next step instead of returning it to the kernel.
///
/// glibc's malloc serves blocks above its mmap threshold (128 KiB at start, adapting) with fresh
/// mappings and gives memory above its trim threshold at the top of the heap back to the kernel.
/// A training or sampling step frees its activations and allocates the same sizes again in the
/// next step, so every step faulted in and zeroed fresh pages: 2.1 million page faults in the toy
/// recipe's 3,000 steps, about a fifth of its CPU time, and a third of DDPM sampling's. This sets
/// the mmap threshold to glibc's maximum (32 MiB: larger blocks are still mapped and unmapped) and
/// trims only above 512 MiB of free heap. The process's peak memory is unchanged; what it keeps
/// after a peak is reused by the next one.
///
/// Call first in main (every executable of the project does). Leaves glibc's settings alone where
/// GLIBC_TUNABLES names a malloc setting, so a user's own choice wins. Returns whether it set them.
bool keep_freed_pages();

}  // namespace unidiff::memory
