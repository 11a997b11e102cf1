// The shared precompiled header: LibTorch's tensor, autograd, nn and optim APIs and the standard
// library pieces most files use. Only headers that never change belong here.
#pragma once
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>
