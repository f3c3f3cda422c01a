// Running another program; see child_process.h.
#include "child_process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "ddpm/error.h"

extern char** environ;

namespace ddpm::cli {
namespace {

std::atomic<pid_t> running_child{0};
std::atomic<bool> child_interrupted{false};

extern "C" void pass_signal_on(int signal) {
  child_interrupted = true;
  const pid_t child = running_child.load();
  if (child > 0) kill(child, signal);
}

// Our environment with `extra` entries replacing or adding names.
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> result;
  for (char** entry = environ; entry && *entry; ++entry) {
    const std::string text = *entry;
    const std::string name = text.substr(0, text.find('='));
    bool replaced = false;
    for (const std::string& added : extra) replaced |= added.substr(0, added.find('=')) == name;
    if (!replaced) result.push_back(text);
  }
  result.insert(result.end(), extra.begin(), extra.end());
  return result;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> result;
  for (std::string& text : strings) result.push_back(text.data());
  result.push_back(nullptr);
  return result;
}

pid_t spawn(const std::string& program, const std::vector<std::string>& arguments,
            const std::vector<std::string>& environment, posix_spawn_file_actions_t* actions) {
  std::vector<std::string> argv_strings = {program};
  argv_strings.insert(argv_strings.end(), arguments.begin(), arguments.end());
  std::vector<std::string> env_strings = child_environment(environment);
  std::vector<char*> argv = c_strings(argv_strings);
  std::vector<char*> envp = c_strings(env_strings);
  pid_t pid = 0;
  const int failed =
      posix_spawnp(&pid, program.c_str(), actions, nullptr, argv.data(), envp.data());
  if (failed) {
    throw Error(ErrorKind::runtime,
                "could not run '" + program + "': " + std::strerror(failed));
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

}  // namespace

ChildResult run_child(const std::string& program, const std::vector<std::string>& arguments,
                      const std::vector<std::string>& environment) {
  child_interrupted = false;
  struct sigaction action = {}, old_int = {}, old_term = {};
  action.sa_handler = pass_signal_on;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  ChildResult result;
  try {
    const pid_t pid = spawn(program, arguments, environment, nullptr);
    running_child = pid;
    const int status = wait_for(pid);
    running_child = 0;
    if (WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    } else {
      result.exit_code = -1;
      result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
  } catch (...) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    throw;
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  result.interrupted = child_interrupted;
  return result;
}

ChildLine first_output_line(const std::string& program,
                            const std::vector<std::string>& arguments) {
  int pipe_ends[2];
  if (pipe(pipe_ends) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclose(&actions, pipe_ends[0]);
  ChildLine result;
  pid_t pid = 0;
  try {
    pid = spawn(program, arguments, {}, &actions);
  } catch (const Error&) {
    pid = 0;
  }
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_ends[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t got; (got = read(pipe_ends[0], buffer, sizeof buffer)) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    output.append(buffer, static_cast<size_t>(got));
  }
  close(pipe_ends[0]);
  if (pid == 0) return {};
  const int status = wait_for(pid);
  result.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  result.line = output.substr(0, output.find('\n'));
  return result;
}

}  // namespace ddpm::cli
