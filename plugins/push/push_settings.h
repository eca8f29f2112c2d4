/* The settings the push plugin declares (push_settings.c): the plugin's and
 * chatd-push's, one entry of the plugins list. */
#ifndef CHATD_PUSH_SETTINGS_H
#define CHATD_PUSH_SETTINGS_H

#include "chatd/plugin.h"

extern const chatd_setting push_settings_decl[];

#endif
