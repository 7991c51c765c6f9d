#include "support/client_helpers.h"

#include <openssl/evp.h>

#include <cstdio>

#include "support/process.h"
#include "support/util.h"

namespace wsa::test {

std::string patternBytes(size_t n, uint32_t seed) {
  std::string data(n, '\0');
  uint32_t x = seed;
  for (auto& c : data) {
    x = x * 1664525 + 1013904223;
    c = static_cast<char>(x >> 24);
  }
  return data;
}

std::string sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

std::string joinArgs(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

std::vector<std::string> sshArgv(const std::string& proxy_command,
                                 const std::string& remote_command, const std::string& host) {
  return {"ssh",
          "-o",
          "BatchMode=yes",
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "LogLevel=ERROR",
          "-o",
          "ProxyCommand=" + proxy_command,
          host,
          remote_command};
}

double metricSum(const std::string& text, const std::string& name) {
  double sum = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.substr(0, name.size()) != name || line.size() <= name.size()) continue;
    char next = line[name.size()];
    if (next != '{' && next != ' ') continue;
    size_t space = line.rfind(' ');
    if (space == std::string_view::npos) continue;
    sum += std::stod(std::string(line.substr(space + 1)));
  }
  return sum;
}

HttpResult labHttpGet(const NatLab& lab, NatLab::Node node, const std::string& url,
                      const std::vector<std::string>& headers, std::chrono::seconds max_time) {
  TempDir dir;
  std::vector<std::string> argv = {"curl",       "-sS",
                                   "--max-time", std::to_string(max_time.count()),
                                   "-o",         dir.file("body"),
                                   "-w",         "%{http_code}",
                                   url};
  if (!headers.empty()) {
    std::string text;
    for (const auto& h : headers) text += h + "\n";
    writeText(dir.file("headers"), text);
    argv.insert(argv.begin() + 1, {"-H", "@" + dir.file("headers")});
  }
  auto r = runSplit(lab.exec(node, argv), max_time + std::chrono::seconds(5));
  HttpResult out;
  out.body = readText(dir.file("body"));
  if (r.code != 0) {
    out.error = "curl exit " + std::to_string(r.code) + ": " + r.err;
    return out;
  }
  try {
    out.status = std::stoi(r.out);
  } catch (const std::exception&) {
    out.error = "curl printed no status: " + r.out;
  }
  return out;
}

}  // namespace wsa::test
