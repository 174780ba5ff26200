#include "../worker.hpp"

#include <string>

namespace ktstr::agent {

extern const WorkType kCpuWorkTypes[];
extern const WorkType kIpcWorkTypes[];
extern const WorkType kSystemWorkTypes[];

const WorkType* find_work_type(const std::string& name) {
    for (const WorkType* table : {kCpuWorkTypes, kIpcWorkTypes, kSystemWorkTypes})
        for (const WorkType* type = table; type->name; ++type)
            if (name == type->name)
                return type;
    return nullptr;
}

} // namespace ktstr::agent
