/* This process's CPU time, memory and descriptors, read from /proc for
 * the standard process_* metrics. Thread-safe (reads only). */
#ifndef CAIRN_SERVER_PROCESS_H
#define CAIRN_SERVER_PROCESS_H

#include "server/telemetry/expo.h"

/* Fills info's process figures and sets info->process. Returns 0, or
 * -errno when /proc could not be read (info->process stays false). */
int cd_process_stats_get(struct cd_expo_info *info);

#endif
