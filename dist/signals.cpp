// dist/signals.h: async-signal-safe handlers that only store the signal number.
#include "dist/signals.h"

#include <csignal>

namespace unidiff::dist {
namespace {

volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }

}  // namespace

void install_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

bool stop_signal_received() { return g_signal != 0; }

int stop_signal_number() { return static_cast<int>(g_signal); }

}  // namespace unidiff::dist
