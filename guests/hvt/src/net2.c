/*
 * net2: the net guest with two network devices, "service" (10.99.0.2) and
 * "backup" (10.99.1.2), on two taps. SUCCESS once each has answered 3 echo
 * requests (--echoes=N: N each). Same options as net.
 */
#define NET_DEVICES 2
#include "hvt_guest.h"
HVT_MANIFEST(HVT_MFT_NET("service"), HVT_MFT_NET("backup"));
#include "net.c"
