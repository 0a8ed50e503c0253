// Graph passes (issue 5, "Passes"): pure functions graph -> graph, in pipeline order, and the
// memory planner. docs/graph.md "Passes and memory planning" has the pipeline, naming, layouts
// and the measured plans.
#pragma once

#include "graph/passes/assign_layouts.h"       // assign_layouts, takes_blocked16
#include "graph/passes/fold_batch_norm.h"      // fold_batch_norm
#include "graph/passes/fuse_epilogues.h"       // fuse_epilogues
#include "graph/passes/lower_for_reference.h"  // lower_for_reference (tests)
#include "graph/passes/memory_plan.h"          // plan_memory, verify_plan, storage_bytes
#include "graph/passes/pipeline.h"             // deploy, official_deploy_options
#include "graph/passes/reparameterize.h"       // reparameterize, DeployForm, CostFn
