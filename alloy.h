/* alloy.h: umbrella header for liballoy. */
#ifndef ALLOY_H
#define ALLOY_H
#include "core/status.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#endif
