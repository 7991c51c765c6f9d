#pragma once
// Flag parsing for our programs' main(): CLI11 prints the problem (or the help), and a bad
// command line exits with 2 in every program, as the docs say (CLI11's own codes start at 100).
// Include from main() files only: it pulls in CLI11.

#include <CLI/CLI.hpp>

#define WSA_CLI_PARSE(app, argc, argv)                \
  try {                                               \
    (app).parse((argc), (argv));                      \
  } catch (const CLI::ParseError& wsa_parse_error_) { \
    int wsa_rc_ = (app).exit(wsa_parse_error_);       \
    return wsa_rc_ == 0 ? 0 : 2;                      \
  }
