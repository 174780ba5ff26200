#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ktstr {

// A kernel's module tree as described by its modules.dep (written by depmod).
class ModuleTree {
  public:
    // `root` is /lib/modules/<release>; it must hold modules.dep.
    explicit ModuleTree(std::filesystem::path root);

    // The module files (relative to root) to load for `names`, each after its dependencies,
    // without repeats. Names match modinfo's: '-' and '_' are the same. Throws Error naming
    // a module the tree does not have.
    std::vector<std::filesystem::path> load_order(const std::vector<std::string>& names) const;

    const std::filesystem::path& root() const { return root_; }

  private:
    void visit(const std::string& file, std::vector<std::filesystem::path>& order,
               std::vector<std::string>& visiting) const;

    std::filesystem::path root_;
    std::map<std::string, std::vector<std::string>, std::less<>> depends_; // file -> files
    std::map<std::string, std::string, std::less<>> file_by_name_;         // name -> file
};

// "kernel/arch/x86/kvm/kvm-amd.ko.xz" -> "kvm_amd".
std::string module_name(std::string_view file);

} // namespace ktstr
