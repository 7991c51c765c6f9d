#pragma once
// A terminal screen model (libvterm) fed with everything a session's program writes, so that a
// client attaching later can be given the current state — screen contents, cursor, modes,
// alternate screen and recent scrollback — as one redraw, instead of a replay of raw bytes that
// garbles full-screen programs.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct VTerm;
struct VTermScreen;
struct VTermState;

namespace wsa::term {

class ScreenModel {
 public:
  struct Options {
    int rows = 24;
    int cols = 80;
    size_t scrollback_bytes = 256 * 1024;  // kept as rendered lines, newest last
  };
  explicit ScreenModel(Options options);
  ~ScreenModel();
  ScreenModel(const ScreenModel&) = delete;
  ScreenModel& operator=(const ScreenModel&) = delete;

  void feed(std::string_view bytes);
  void resize(int rows, int cols);
  int rows() const { return rows_; }
  int cols() const { return cols_; }

  // Escape sequences that bring a fresh terminal of the same size to this state.
  std::string redraw() const;
  // The visible text (rows joined with '\n', trailing blanks trimmed) — for tests and logs.
  std::string text() const;
  void cursor(int* row, int* col) const;
  bool altScreen() const { return alt_screen_; }
  // Nothing has been fed yet: there is nothing to redraw.
  bool pristine() const { return pristine_; }
  size_t scrollbackLines() const { return scrollback_.size(); }

  // libvterm callbacks.
  int onPushLine(int cols, const void* cells);
  int onTermProp(int prop, const void* val);

 private:
  std::string renderRow(int row) const;
  std::string renderCells(int cols, const void* cells) const;
  std::vector<size_t> scanModes(std::string_view bytes);
  void snapshotPrimary();

  VTerm* vt_ = nullptr;
  VTermScreen* screen_ = nullptr;
  VTermState* state_ = nullptr;
  int rows_;
  int cols_;
  Options options_;
  std::deque<std::string> scrollback_;
  size_t scrollback_size_ = 0;
  // The primary screen, captured when the program switched to the alternate one.
  std::vector<std::string> primary_;
  int primary_row_ = 0;
  int primary_col_ = 0;
  bool alt_screen_ = false;
  bool pristine_ = true;
  bool cursor_visible_ = true;
  int mouse_ = 0;
  std::string title_;
  // Modes libvterm 0.1.4 does not expose, tracked from the byte stream.
  bool app_cursor_ = false;
  bool app_keypad_ = false;
  bool bracketed_paste_ = false;
  bool focus_events_ = false;
  bool sgr_mouse_ = false;
  std::string pending_;  // an escape sequence split across feeds
};

}  // namespace wsa::term
