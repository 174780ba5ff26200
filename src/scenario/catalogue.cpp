#include "ktstr/scenario/catalogue.hpp"

#include "ktstr/base/error.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ktstr {

std::vector<Scenario> catalogue() {
    std::vector<Scenario> scenarios;
    for (const auto& file : catalogue_files())
        scenarios.push_back(parse_scenario(nlohmann::json::parse(file.text()),
                                           "scenarios/" + std::string(file.path)));
    std::sort(scenarios.begin(), scenarios.end(), [](const Scenario& a, const Scenario& b) {
        return std::tie(a.group, a.name) < std::tie(b.group, b.name);
    });
    return scenarios;
}

Scenario find_scenario(const std::string& spec) {
    if (spec.find('/') != std::string::npos || spec.ends_with(".json"))
        return load_scenario_file(spec);
    std::vector<std::string> names;
    for (auto& scenario : catalogue()) {
        if (scenario.name == spec)
            return scenario;
        names.push_back(scenario.name);
    }
    throw UsageError(fmt::format("there is no scenario '{}' (ktstr scenario list shows the {}: "
                                 "{})",
                                 spec, names.size(), fmt::join(names, ", ")));
}

} // namespace ktstr
