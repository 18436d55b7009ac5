// overloaded.hpp — a visitor made of lambdas, for std::visit over the typed control
// messages (internal).
#pragma once

namespace agentbus::util {

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

}  // namespace agentbus::util
