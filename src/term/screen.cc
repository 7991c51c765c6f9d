#include "wsa/term/screen.h"

#include <cstring>
#include <vector>

extern "C" {
#include <vterm.h>
}

namespace wsa::term {

namespace {

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

bool sameColor(const VTermColor& a, const VTermColor& b) {
  if (a.type != b.type) return false;
  if (VTERM_COLOR_IS_INDEXED(&a)) return a.indexed.idx == b.indexed.idx;
  return a.rgb.red == b.rgb.red && a.rgb.green == b.rgb.green && a.rgb.blue == b.rgb.blue;
}

bool isDefault(const VTermColor& c, bool fg) {
  return fg ? VTERM_COLOR_IS_DEFAULT_FG(&c) : VTERM_COLOR_IS_DEFAULT_BG(&c);
}

// The SGR parameters selecting a colour (";"-prefixed), or "" for the default colour.
std::string sgrColor(const VTermColor& c, bool fg) {
  if (isDefault(c, fg)) return "";
  if (VTERM_COLOR_IS_INDEXED(&c)) {
    int idx = c.indexed.idx;
    if (idx < 8) return ";" + std::to_string((fg ? 30 : 40) + idx);
    if (idx < 16) return ";" + std::to_string((fg ? 90 : 100) + idx - 8);
    return std::string(fg ? ";38;5;" : ";48;5;") + std::to_string(idx);
  }
  return std::string(fg ? ";38;2;" : ";48;2;") + std::to_string(c.rgb.red) + ";" +
         std::to_string(c.rgb.green) + ";" + std::to_string(c.rgb.blue);
}

int pushLine(int cols, const VTermScreenCell* cells, void* user) {
  return static_cast<ScreenModel*>(user)->onPushLine(cols, cells);
}

int setTermProp(VTermProp prop, VTermValue* val, void* user) {
  return static_cast<ScreenModel*>(user)->onTermProp(static_cast<int>(prop), val);
}

const VTermScreenCallbacks kCallbacks = {
    nullptr,      // damage
    nullptr,      // moverect
    nullptr,      // movecursor
    setTermProp,  // settermprop
    nullptr,      // bell
    nullptr,      // resize
    pushLine,     // sb_pushline
    nullptr,      // sb_popline
};

}  // namespace

ScreenModel::ScreenModel(Options options)
    : rows_(options.rows), cols_(options.cols), options_(options) {
  vt_ = vterm_new(rows_, cols_);
  vterm_set_utf8(vt_, 1);
  screen_ = vterm_obtain_screen(vt_);
  state_ = vterm_obtain_state(vt_);
  vterm_screen_enable_altscreen(screen_, 1);
  vterm_screen_set_callbacks(screen_, &kCallbacks, this);
  vterm_screen_reset(screen_, 1);
}

ScreenModel::~ScreenModel() {
  vterm_free(vt_);
}

void ScreenModel::feed(std::string_view bytes) {
  if (bytes.empty()) return;
  pristine_ = false;
  // libvterm switches to the alternate buffer before it reports the switch, so the primary
  // screen is captured just before each sequence that enables the alternate screen.
  std::vector<size_t> alt_at = scanModes(bytes);
  size_t done = 0;
  for (size_t at : alt_at) {
    vterm_input_write(vt_, bytes.data() + done, at - done);
    done = at;
    if (!alt_screen_) snapshotPrimary();
  }
  vterm_input_write(vt_, bytes.data() + done, bytes.size() - done);
  // Answers to terminal queries are the attached clients' business: drop libvterm's.
  char sink[4096];
  while (vterm_output_read(vt_, sink, sizeof(sink)) > 0) {
  }
}

void ScreenModel::resize(int rows, int cols) {
  if (rows <= 0 || cols <= 0 || (rows == rows_ && cols == cols_)) return;
  rows_ = rows;
  cols_ = cols;
  vterm_set_size(vt_, rows, cols);
}

void ScreenModel::cursor(int* row, int* col) const {
  VTermPos pos;
  vterm_state_get_cursorpos(state_, &pos);
  *row = pos.row;
  *col = pos.col;
}

int ScreenModel::onPushLine(int cols, const void* cells) {
  std::string line = renderCells(cols, cells);
  scrollback_size_ += line.size();
  scrollback_.push_back(std::move(line));
  while (scrollback_size_ > options_.scrollback_bytes && !scrollback_.empty()) {
    scrollback_size_ -= scrollback_.front().size();
    scrollback_.pop_front();
  }
  return 1;
}

int ScreenModel::onTermProp(int prop, const void* v) {
  const auto* val = static_cast<const VTermValue*>(v);
  switch (prop) {
    case VTERM_PROP_CURSORVISIBLE:
      cursor_visible_ = val->boolean != 0;
      break;
    case VTERM_PROP_ALTSCREEN:
      alt_screen_ = val->boolean != 0;
      if (!alt_screen_) primary_.clear();
      break;
    case VTERM_PROP_TITLE:
      title_ = val->string != nullptr ? val->string : "";
      break;
    case VTERM_PROP_MOUSE:
      mouse_ = val->number;
      break;
    default:
      break;
  }
  return 1;
}

void ScreenModel::snapshotPrimary() {
  // Called just before the alternate screen is enabled: the visible rows are the primary ones.
  primary_.clear();
  for (int r = 0; r < rows_; ++r) primary_.push_back(renderRow(r));
  cursor(&primary_row_, &primary_col_);
}

std::string ScreenModel::renderCells(int cols, const void* c) const {
  const auto* cells = static_cast<const VTermScreenCell*>(c);
  VTermColor def_fg, def_bg;
  vterm_state_get_default_colors(state_, &def_fg, &def_bg);
  // Trim trailing blank cells with a default background.
  int last = cols - 1;
  while (last >= 0 && cells[last].chars[0] == 0 && isDefault(cells[last].bg, false) &&
         cells[last].attrs.reverse == 0) {
    --last;
  }
  if (last < 0) return "";  // blank: nothing to draw on a cleared screen
  std::string out = "\x1b[0m";
  VTermScreenCell cur{};
  cur.fg = def_fg;
  cur.bg = def_bg;
  for (int i = 0; i <= last; ++i) {
    const VTermScreenCell& cell = cells[i];
    bool attrs_differ =
        cell.attrs.bold != cur.attrs.bold || cell.attrs.italic != cur.attrs.italic ||
        cell.attrs.underline != cur.attrs.underline || cell.attrs.blink != cur.attrs.blink ||
        cell.attrs.reverse != cur.attrs.reverse || cell.attrs.strike != cur.attrs.strike ||
        !sameColor(cell.fg, cur.fg) || !sameColor(cell.bg, cur.bg);
    if (attrs_differ) {
      out += "\x1b[0";
      if (cell.attrs.bold) out += ";1";
      if (cell.attrs.italic) out += ";3";
      if (cell.attrs.underline) out += ";4";
      if (cell.attrs.blink) out += ";5";
      if (cell.attrs.reverse) out += ";7";
      if (cell.attrs.strike) out += ";9";
      out += sgrColor(cell.fg, true);
      out += sgrColor(cell.bg, false);
      out += "m";
      cur = cell;
    }
    if (cell.chars[0] == 0) {
      out += ' ';
    } else {
      for (int k = 0; k < VTERM_MAX_CHARS_PER_CELL && cell.chars[k] != 0; ++k) {
        appendUtf8(out, cell.chars[k]);
      }
    }
    if (cell.width == 2) ++i;  // the next cell is the right half of a wide character
  }
  out += "\x1b[0m";
  return out;
}

std::string ScreenModel::renderRow(int row) const {
  std::vector<VTermScreenCell> cells(static_cast<size_t>(cols_));
  for (int c = 0; c < cols_; ++c) {
    VTermPos pos{row, c};
    vterm_screen_get_cell(screen_, pos, &cells[static_cast<size_t>(c)]);
  }
  return renderCells(cols_, cells.data());
}

std::string ScreenModel::text() const {
  std::string out;
  for (int r = 0; r < rows_; ++r) {
    std::string line;
    for (int c = 0; c < cols_; ++c) {
      VTermScreenCell cell;
      vterm_screen_get_cell(screen_, VTermPos{r, c}, &cell);
      if (cell.chars[0] == 0) {
        line += ' ';
      } else {
        for (int k = 0; k < VTERM_MAX_CHARS_PER_CELL && cell.chars[k] != 0; ++k) {
          appendUtf8(line, cell.chars[k]);
        }
      }
      if (cell.width == 2) ++c;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    if (r + 1 < rows_) out += '\n';
  }
  return out;
}

std::vector<size_t> ScreenModel::scanModes(std::string_view bytes) {
  // Tracks DEC private modes (ESC [ ? Pm h|l) and keypad modes (ESC = / ESC >) that libvterm
  // does not report, and returns where (in `bytes`) sequences enabling the alternate screen
  // start. A sequence split across feeds is kept in pending_ (bounded).
  std::vector<size_t> alt_at;
  size_t carried = pending_.size();
  std::string data = pending_ + std::string(bytes);
  pending_.clear();
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] != '\x1b') continue;
    if (i + 1 >= data.size()) {
      pending_ = data.substr(i);
      break;
    }
    char n = data[i + 1];
    if (n == '=') app_keypad_ = true;
    if (n == '>') app_keypad_ = false;
    if (n != '[') continue;
    if (i + 2 >= data.size()) {
      pending_ = data.substr(i);
      break;
    }
    if (data[i + 2] != '?') continue;
    size_t j = i + 3;
    while (j < data.size() && ((data[j] >= '0' && data[j] <= '9') || data[j] == ';')) ++j;
    if (j >= data.size()) {
      if (j - i < 32) pending_ = data.substr(i);
      break;
    }
    char final = data[j];
    if (final != 'h' && final != 'l') continue;
    bool on = final == 'h';
    std::string params = data.substr(i + 3, j - i - 3);
    size_t start = 0;
    while (start <= params.size()) {
      size_t semi = params.find(';', start);
      std::string p =
          params.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
      if (p == "1") app_cursor_ = on;
      if (p == "2004") bracketed_paste_ = on;
      if (p == "1004") focus_events_ = on;
      if (p == "1006") sgr_mouse_ = on;
      if (on && (p == "1049" || p == "1047" || p == "47"))
        alt_at.push_back(i >= carried ? i - carried : 0);
      if (semi == std::string::npos) break;
      start = semi + 1;
    }
  }
  return alt_at;
}

std::string ScreenModel::redraw() const {
  std::string out;
  out += "\x1b[0m\x1b[?25l";  // hide the cursor while drawing
  auto drawRows = [&](const std::vector<std::string>& lines) {
    for (size_t r = 0; r < lines.size(); ++r) {
      if (lines[r].empty()) continue;
      out += "\x1b[" + std::to_string(r + 1) + ";1H" + lines[r];
    }
  };
  auto current = [&] {
    std::vector<std::string> lines;
    for (int r = 0; r < rows_; ++r) lines.push_back(renderRow(r));
    return lines;
  };
  // Scrollback first, printed as lines so that the client's own scrollback receives them; then
  // the primary screen fills the whole view.
  out += "\x1b[H\x1b[2J";
  for (const auto& line : scrollback_) out += line + "\r\n";
  std::vector<std::string> primary = alt_screen_ ? primary_ : current();
  if (!scrollback_.empty()) {
    // Scroll the scrollback up and out of the view, then draw the screen in place.
    for (int r = 0; r < rows_; ++r) out += "\r\n";
  }
  drawRows(primary);
  if (alt_screen_) {
    // DECSC (part of mode 1049) saves the primary cursor: put it where the program left it.
    out += "\x1b[" + std::to_string(primary_row_ + 1) + ";" + std::to_string(primary_col_ + 1) +
           "H\x1b[?1049h\x1b[H\x1b[2J";
    drawRows(current());
  }
  if (!title_.empty()) out += "\x1b]0;" + title_ + "\x07";
  out += app_cursor_ ? "\x1b[?1h" : "\x1b[?1l";
  out += app_keypad_ ? "\x1b=" : "\x1b>";
  if (bracketed_paste_) out += "\x1b[?2004h";
  if (focus_events_) out += "\x1b[?1004h";
  switch (mouse_) {
    case VTERM_PROP_MOUSE_CLICK:
      out += "\x1b[?1000h";
      break;
    case VTERM_PROP_MOUSE_DRAG:
      out += "\x1b[?1002h";
      break;
    case VTERM_PROP_MOUSE_MOVE:
      out += "\x1b[?1003h";
      break;
    default:
      break;
  }
  if (sgr_mouse_) out += "\x1b[?1006h";
  int row = 0, col = 0;
  cursor(&row, &col);
  out += "\x1b[" + std::to_string(row + 1) + ";" + std::to_string(col + 1) + "H";
  out += cursor_visible_ ? "\x1b[?25h" : "\x1b[?25l";
  return out;
}

}  // namespace wsa::term
