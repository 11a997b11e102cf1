// The collective watchdog (dist/watchdog.h).
#include "dist/watchdog.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/error.h"
#include "dist/job.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

namespace unidiff::dist {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kQueryTag = 1;
constexpr int kReplyTag = 2;
constexpr auto kPoll = std::chrono::milliseconds(200);
constexpr double kAnswerWait = 5.0;  ///< seconds a timed-out rank waits for the others' answers

struct Active {
  bool used = false;
  int64_t comm_id = 0;
  std::string label;
  const char *op = "";
  int64_t seq = 0;
  int64_t count = 0;
  Clock::time_point since;
};

struct State {
  std::mutex mu;
  std::vector<Active> active;  ///< slots of the collectives now waiting (one per thread in one)
  Active last;                 ///< the last collective that ended (`used` once there is one)
  std::atomic<double> timeout{1800.0};
  // The thread and its communicator.
  std::mutex run_mu;
  std::condition_variable wake;
  bool stop = false;
  std::thread *thread = nullptr;  ///< never destroyed: a job may end by exit() while it runs
  MPI_Comm comm = MPI_COMM_NULL;
  bool can_ask = false;  ///< MPI_THREAD_MULTIPLE: the thread may call MPI while others do
};

State &state() {
  static State *s = new State;  // never destroyed, like the thread that reads it
  return *s;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string describe(const Active &a) {
  return unidiff::detail::str_cat(a.op, " #", a.seq, " on communicator \"", a.label, "\" (", a.count,
                                  " elements)");
}

/// This rank's answer to "where are you?": a first line of keys "@comm:seq" of
/// the collectives it waits in, then the words.
std::string status_reply() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  std::string keys;
  std::string words;
  for (const Active &a : s.active) {
    if (!a.used) continue;
    keys += unidiff::detail::str_cat("@", a.comm_id, ":", a.seq, " ");
    char waited[32];
    std::snprintf(waited, sizeof(waited), "%.1f", seconds_since(a.since));
    words += unidiff::detail::str_cat(words.empty() ? "" : "; ", "waiting in ", describe(a), " for ", waited,
                                      " s");
  }
  if (words.empty()) {
    if (s.last.used) {
      char ago[32];
      std::snprintf(ago, sizeof(ago), "%.1f", seconds_since(s.last.since));
      words = unidiff::detail::str_cat("computing, in no collective (its last, ", describe(s.last),
                                       ", ended ", ago, " s ago)");
    } else {
      words = "computing, in no collective (none yet)";
    }
  }
  return keys + "\n" + words;
}

/// Answers every question waiting on the watchdog communicator.
void answer_questions() {
  State &s = state();
  for (;;) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, s.comm, &flag, &st) != MPI_SUCCESS || !flag) return;
    int ignored = 0;
    MPI_Recv(&ignored, 1, MPI_INT, st.MPI_SOURCE, kQueryTag, s.comm, MPI_STATUS_IGNORE);
    const std::string reply = status_reply();
    MPI_Send(reply.data(), static_cast<int>(reply.size()), MPI_CHAR, st.MPI_SOURCE, kReplyTag, s.comm);
  }
}

[[noreturn]] void diagnose_and_abort(const Active &a, double waited) {
  State &s = state();
  const int me = rank();
  const int n = world_size();
  char head[64];
  std::snprintf(head, sizeof(head), "%.1f s (--dist_timeout=%g)", waited, s.timeout.load());
  std::string message = unidiff::detail::str_cat(describe(a), " has waited ", head, " for the other ranks");
  if (!s.can_ask) {
    message +=
        "; MPI gives no MPI_THREAD_MULTIPLE, so the other ranks cannot "
        "be asked where they are";
  } else {
    const std::string key = unidiff::detail::str_cat("@", a.comm_id, ":", a.seq, " ");
    std::vector<std::string> answers(n);
    std::vector<bool> answered(n, false);
    std::vector<MPI_Request> asks;
    int question = 0;
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      asks.emplace_back();
      MPI_Isend(&question, 1, MPI_INT, p, kQueryTag, s.comm, &asks.back());
    }
    int pending = n - 1;
    const auto start = Clock::now();
    while (pending > 0 && seconds_since(start) < kAnswerWait) {
      answer_questions();  // another rank that timed out may be asking this one
      for (int p = 0; p < n; ++p) {
        if (p == me || answered[p]) continue;
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(p, kReplyTag, s.comm, &flag, &st) != MPI_SUCCESS || !flag) continue;
        int len = 0;
        MPI_Get_count(&st, MPI_CHAR, &len);
        std::string text(static_cast<size_t>(std::max(len, 0)), '\0');
        MPI_Recv(text.data(), len, MPI_CHAR, p, kReplyTag, s.comm, MPI_STATUS_IGNORE);
        answers[p] = std::move(text);
        answered[p] = true;
        --pending;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::string missing;
    std::string details;
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      const size_t nl = answers[p].find('\n');
      const bool arrived = answered[p] && answers[p].substr(0, nl).find(key) != std::string::npos;
      if (arrived) continue;
      missing += unidiff::detail::str_cat(missing.empty() ? "" : ", ", p);
      details += unidiff::detail::str_cat(
          "\n  rank ", p, ": ",
          answered[p]
              ? answers[p].substr(nl + 1)
              : unidiff::detail::str_cat("no answer within ", kAnswerWait, " s (stopped, hung or dead)"));
    }
    message += missing.empty() ? "; every rank says it is there (a fault inside MPI?)"
                               : unidiff::detail::str_cat("; ranks that did not arrive: ", missing, details);
  }
  std::fprintf(stderr, "unidiff [rank %d]: error: %s\nunidiff [rank %d]: aborting the job\n", me,
               message.c_str(), me);
  std::fflush(stderr);
  if (s.can_ask) MPI_Abort(MPI_COMM_WORLD, kExitFailure);
  _exit(kExitFailure);  // mpirun ends the other ranks when one exits without
                        // MPI_Finalize
}

void watch() {
  State &s = state();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(s.run_mu);
      if (s.wake.wait_for(lock, kPoll, [&] { return s.stop; })) return;
    }
    if (s.can_ask) answer_questions();
    const double timeout = s.timeout.load();
    if (timeout <= 0) continue;
    Active late;
    double waited = 0;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      for (const Active &a : s.active) {
        if (a.used && seconds_since(a.since) > timeout) {
          late = a;
          waited = seconds_since(a.since);
          break;
        }
      }
    }
    if (late.used) diagnose_and_abort(late, waited);
  }
}

}  // namespace

void set_collective_timeout(double seconds) {
  UD_CHECK_INPUT(seconds >= 0 && seconds <= 7 * 24 * 3600.0,
                 "the collective timeout must be between 0 (none) and a week "
                 "in seconds, got ",
                 seconds);
  state().timeout = seconds;
}

double collective_timeout() { return state().timeout.load(); }

WatchedCollective::WatchedCollective(int64_t comm_id, const std::string &label, const char *op, int64_t seq,
                                     int64_t count) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  size_t k = 0;
  while (k < s.active.size() && s.active[k].used) ++k;
  if (k == s.active.size()) s.active.emplace_back();
  Active &a = s.active[k];
  a.used = true;
  a.comm_id = comm_id;
  a.label = label;
  a.op = op;
  a.seq = seq;
  a.count = count;
  a.since = Clock::now();
  slot_ = static_cast<int>(k);
}

WatchedCollective::~WatchedCollective() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  Active &a = s.active[static_cast<size_t>(slot_)];
  a.used = false;
  s.last = a;
  s.last.used = true;
  s.last.since = Clock::now();  // for `last`: when it ended
}

namespace detail {

void start_watchdog() {
  State &s = state();
  if (s.thread != nullptr) return;
  int level = MPI_THREAD_SINGLE;
  MPI_CHECK(MPI_Query_thread(&level));
  s.can_ask = level >= MPI_THREAD_MULTIPLE;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &s.comm));
  MPI_CHECK(MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN));
  s.stop = false;
  s.thread = new std::thread(watch);
}

void stop_watchdog() {
  State &s = state();
  if (s.thread == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(s.run_mu);
    s.stop = true;
  }
  s.wake.notify_all();
  s.thread->join();
  delete s.thread;
  s.thread = nullptr;
  MPI_Comm_free(&s.comm);
}

}  // namespace detail

}  // namespace unidiff::dist
