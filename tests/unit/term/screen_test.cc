// The screen model's redraw must bring a fresh terminal to the same state: a second model fed
// only the redraw is compared with the first (text, cursor, alternate screen, and what remains
// after the program leaves the alternate screen).

#include "wsa/term/screen.h"

#include <gtest/gtest.h>

#include <string>

namespace wsa::term {
namespace {

ScreenModel::Options size(int rows, int cols) {
  return {rows, cols, 256 * 1024};
}

struct Pos {
  int row, col;
  bool operator==(const Pos&) const = default;
};

Pos cursorOf(const ScreenModel& m) {
  Pos p{};
  m.cursor(&p.row, &p.col);
  return p;
}

// A fresh model of the same size fed only `m.redraw()`.
std::unique_ptr<ScreenModel> replayed(const ScreenModel& m) {
  auto fresh = std::make_unique<ScreenModel>(size(m.rows(), m.cols()));
  fresh->feed(m.redraw());
  return fresh;
}

void expectSame(const ScreenModel& a, const ScreenModel& b) {
  EXPECT_EQ(a.text(), b.text());
  EXPECT_EQ(cursorOf(a), cursorOf(b));
  EXPECT_EQ(a.altScreen(), b.altScreen());
}

TEST(ScreenModelTest, PlainTextAndCursor) {
  ScreenModel m(size(5, 20));
  m.feed("hello\r\nworld\r\n\x1b[31mred\x1b[0m and \x1b[1mbold\x1b[0m");
  EXPECT_EQ(m.text(), "hello\nworld\nred and bold\n\n");
  EXPECT_EQ(cursorOf(m), (Pos{2, 12}));
  auto r = replayed(m);
  expectSame(m, *r);
  // Colours survive: the redraw contains an SGR with red (31).
  EXPECT_NE(m.redraw().find(";31m"), std::string::npos) << m.redraw();
}

TEST(ScreenModelTest, ColoursOfEveryKindSurvive) {
  ScreenModel m(size(3, 30));
  m.feed("\x1b[32mg\x1b[94mB\x1b[38;5;200mi\x1b[38;2;1;2;3mt\x1b[44mb\x1b[0m");
  std::string d = m.redraw();
  EXPECT_NE(d.find(";32m"), std::string::npos);
  EXPECT_NE(d.find(";94m"), std::string::npos);
  EXPECT_NE(d.find(";38;5;200m"), std::string::npos);
  EXPECT_NE(d.find(";38;2;1;2;3;44m"), std::string::npos) << d;
  auto r = replayed(m);
  EXPECT_EQ(r->redraw(), d);  // a second round trip changes nothing
}

TEST(ScreenModelTest, ScrollbackIsReplayedAboveTheScreen) {
  ScreenModel m(size(4, 20));
  for (int i = 0; i < 10; ++i) m.feed("line " + std::to_string(i) + "\r\n");
  EXPECT_EQ(m.text(), "line 7\nline 8\nline 9\n");
  EXPECT_EQ(m.scrollbackLines(), 7u);
  auto r = replayed(m);
  expectSame(m, *r);
  EXPECT_GE(r->scrollbackLines(), 7u);
}

TEST(ScreenModelTest, ScrollbackIsBounded) {
  ScreenModel m({3, 10, 1000});
  for (int i = 0; i < 1000; ++i) m.feed("0123456789");
  EXPECT_LT(m.scrollbackLines(), 100u);
  EXPECT_GT(m.scrollbackLines(), 10u);
}

TEST(ScreenModelTest, AlternateScreenAndPrimaryUnderneath) {
  ScreenModel m(size(6, 30));
  m.feed("$ prompt before\r\n$ vim file");
  Pos before = cursorOf(m);
  // A full-screen program: alternate screen, application cursor keys, its own drawing.
  m.feed("\x1b[?1049h\x1b[?1h\x1b=\x1b[H\x1b[2J~\r\n~\r\n\x1b[5;1H\"file\" 3L\x1b[1;1Htext");
  ASSERT_TRUE(m.altScreen());
  auto r = replayed(m);
  expectSame(m, *r);
  std::string d = m.redraw();
  EXPECT_NE(d.find("\x1b[?1h"), std::string::npos);
  EXPECT_NE(d.find("\x1b="), std::string::npos);
  // Leaving the alternate screen restores the primary screen and cursor in both.
  m.feed("\x1b[?1049l");
  r->feed("\x1b[?1049l");
  EXPECT_FALSE(r->altScreen());
  expectSame(m, *r);
  EXPECT_EQ(cursorOf(*r), before);
  EXPECT_EQ(r->text().substr(0, 15), "$ prompt before");
}

TEST(ScreenModelTest, SequencesSplitAcrossFeeds) {
  ScreenModel m(size(4, 20));
  m.feed("abc\x1b");
  m.feed("[?10");
  m.feed("49h\x1b[?20");
  m.feed("04hX");
  EXPECT_TRUE(m.altScreen());
  EXPECT_NE(m.redraw().find("\x1b[?2004h"), std::string::npos);
  auto r = replayed(m);
  expectSame(m, *r);
  m.feed("\x1b[?1049l");
  r->feed("\x1b[?1049l");
  expectSame(m, *r);
  EXPECT_EQ(r->text().substr(0, 3), "abc");
}

TEST(ScreenModelTest, WideAndCombiningCharacters) {
  ScreenModel m(size(3, 20));
  m.feed("\xe6\x97\xa5\xe6\x9c\xac e\xcc\x81 \xf0\x9f\x99\x82!");  // 日本 é 🙂!
  auto r = replayed(m);
  expectSame(m, *r);
  EXPECT_EQ(r->text().substr(0, 6), "\xe6\x97\xa5\xe6\x9c\xac");
}

TEST(ScreenModelTest, ResizeKeepsAWorkingModel) {
  ScreenModel m(size(4, 10));
  m.feed("0123456789abcdef");
  m.resize(6, 30);
  EXPECT_EQ(m.rows(), 6);
  m.feed("\r\nmore");
  auto r = replayed(m);
  expectSame(m, *r);
}

TEST(ScreenModelTest, QueriesAreNotAnswered) {
  // Device status reports are the attached client's to answer; the model stays silent and
  // unchanged.
  ScreenModel m(size(3, 10));
  m.feed("a\x1b[6n\x1b[cb");
  EXPECT_EQ(m.text(), "ab\n\n");
}

}  // namespace
}  // namespace wsa::term
