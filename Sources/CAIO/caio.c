#include "caio.h"
