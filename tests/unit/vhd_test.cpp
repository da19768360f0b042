#include "vhd.h"
