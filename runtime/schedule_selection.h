// Tuned schedules in use: which record files and distilled tables select_kernel consults, and how
// a tuned schedule becomes a kernel variant (docs/records.md, "Selection").
//
// Sources, in the order a lookup sees them (ties between sources: the lower median wins):
//   - the distilled tables compiled into this build (schedules/tuned/*.json), for this device;
//   - record files given with --records, or by default the user's own file
//     (default_user_records_path(); LKC_RECORDS=none turns it off).
// A tuned schedule runs as: a compiled-in variant with the same generator and parameters, else a
// variant loaded from the tuner's kernel cache (kernel_cache_dir()), else the next match, else
// the hand default.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/registry.h"
#include "runtime/tuning_records.h"

namespace lkc {

// Installs the tuned selector with the given record files (empty: the user's default file, if it
// exists) and, when `builtin_tables`, the compiled-in distilled tables. Idempotent per argument
// set; problems found while loading (corrupt lines, unreadable files) are kept for
// schedule_problems(). Record files that do not exist are skipped silently.
void use_schedules(const std::vector<std::string>& record_files = {}, bool builtin_tables = true);

// Turns tuned selection off (hand defaults only).
void disable_schedules();

// What loading the current sources reported ("file:line: what").
const std::vector<std::string>& schedule_problems();

// The sources in use, for --verbose.
std::vector<std::string> schedule_sources();

// The tuning-record device id of d on this machine ("cpu/AMD EPYC/avx512/2c", ...). Throws
// DeviceUnavailable for a device that does not exist.
const std::string& this_device_id(Device d);

// Where the tuner keeps compiled candidates: $LKC_KERNEL_CACHE, else $XDG_CACHE_HOME/lkc/kernels,
// else ~/.cache/lkc/kernels; one subdirectory per device slug.
std::string kernel_cache_dir();
// The shared object of variant `name` for device id `device_id` in the cache.
std::string cached_kernel_path(const std::string& device_id, const std::string& name);

// The tuned variant for w on d among those `can_run` accepts (exact record first, then nearest),
// or a Selection with kernel == null. What select_kernel consults (can_run = kernel_supports).
Selection select_tuned(const Workload& w, Device d,
                       const std::function<bool(const KernelInfo&)>& can_run);

// The compiled-in distilled tables: (file name, JSON text).
const std::vector<std::pair<std::string, std::string>>& builtin_tuned_tables();

// The variant that runs schedule s on d: a compiled-in or loaded variant with the same
// canonical schedule, else the cached library (loaded now), else null.
const KernelInfo* kernel_for_schedule(const Schedule& s, Device d);

}  // namespace lkc
