// fresh_test_dir() for tests outside mmsearch::test_support (one definition: test_dirs.h).
#pragma once

#include "test_dirs.h"

using mmsearch::test_support::fresh_test_dir;
