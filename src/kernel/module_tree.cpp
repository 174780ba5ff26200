#include "ktstr/kernel/module_tree.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/files.hpp"

#include <algorithm>
#include <sstream>

namespace fs = std::filesystem;

namespace ktstr {

std::string module_name(std::string_view file) {
    auto slash = file.rfind('/');
    std::string name(slash == std::string_view::npos ? file : file.substr(slash + 1));
    name = name.substr(0, name.find(".ko"));
    std::replace(name.begin(), name.end(), '-', '_');
    return name;
}

ModuleTree::ModuleTree(fs::path root) : root_(std::move(root)) {
    std::istringstream lines(read_file(root_ / "modules.dep"));
    for (std::string line; std::getline(lines, line);) {
        auto colon = line.find(':');
        if (colon == std::string::npos)
            continue;
        std::string file = line.substr(0, colon);
        std::istringstream deps(line.substr(colon + 1));
        std::vector<std::string>& list = depends_[file];
        for (std::string dep; deps >> dep;)
            list.push_back(dep);
        file_by_name_[module_name(file)] = file;
    }
}

void ModuleTree::visit(const std::string& file, std::vector<fs::path>& order,
                       std::vector<std::string>& visiting) const {
    if (std::find(order.begin(), order.end(), fs::path(file)) != order.end())
        return;
    if (std::find(visiting.begin(), visiting.end(), file) != visiting.end())
        throw Error("modules.dep has a dependency cycle through " + file);
    visiting.push_back(file);
    auto it = depends_.find(file);
    if (it == depends_.end())
        throw Error("modules.dep names " + file + " but has no entry for it");
    for (const auto& dep : it->second)
        visit(dep, order, visiting);
    visiting.pop_back();
    order.emplace_back(file);
}

std::vector<fs::path> ModuleTree::load_order(const std::vector<std::string>& names) const {
    std::vector<fs::path> order;
    std::vector<std::string> visiting;
    for (const auto& name : names) {
        auto it = file_by_name_.find(module_name(name));
        if (it == file_by_name_.end())
            throw Error("kernel module '" + name + "' is not in " + root_.string());
        visit(it->second, order, visiting);
    }
    return order;
}

} // namespace ktstr
