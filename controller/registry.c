/* registry.c - the reconcilers compiled into this build; see the
 * "Registering" paragraph of reconciler.h.
 *
 * A reconciler is listed when its header exists and defines its marker
 * macro, so the tree builds before and after each reconciler lands.
 *
 * Test hooks (environment):
 *   ZLH_TEST_RECONCILERS=name,...   only these reconcilers ("" = none);
 *   ZLH_TEST_PROBE=FILE             adds the probe reconciler (probe.c),
 *                                   which records each act in FILE. */
#include <stdlib.h>
#include <string.h>

#include "controller/probe.h"
#include "controller/reconciler.h"

#if __has_include("reconcilers/container_recon.h")
#include "reconcilers/container_recon.h"
#endif
#if __has_include("reconcilers/agent.h")
#include "reconcilers/agent.h"
#endif
#if __has_include("reconcilers/backup.h")
#include "reconcilers/backup.h"
#endif
#if __has_include("reconcilers/proxy.h")
#include "reconcilers/proxy.h"
#endif
#if __has_include("reconcilers/dns.h")
#include "reconcilers/dns.h"
#endif

static const Reconciler *const compiled[] = {
#ifdef ZLH_HAVE_RECON_CONTAINER
    &recon_container,
#endif
#ifdef ZLH_HAVE_RECON_AGENT
    &recon_agent,
#endif
#ifdef ZLH_HAVE_RECON_BACKUP
    &recon_backup,
#endif
#ifdef ZLH_HAVE_RECON_PROXY
    &recon_proxy,
#endif
#ifdef ZLH_HAVE_RECON_DNS
    &recon_dns,
#endif
    NULL,
};

static bool name_in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		size_t l = strcspn(p, ",");
		if (l == n && strncmp(p, name, n) == 0)
			return true;
		p += l;
		if (*p == ',')
			p++;
	}
	return false;
}

const Reconciler *const *recon_registry(void)
{
	/* Built once; the environment does not change under a running
	 * process. Callers run this from main before threads start. */
	static const Reconciler *list[ELEMENTSOF(compiled) + 2];
	static bool built;
	if (built)
		return list;
	const char *only = getenv("ZLH_TEST_RECONCILERS");
	size_t n = 0;
	if (getenv("ZLH_TEST_PROBE") && (!only || name_in_list(only, recon_probe.name)))
		list[n++] = &recon_probe;
	for (size_t i = 0; compiled[i]; i++)
		if (!only || name_in_list(only, compiled[i]->name))
			list[n++] = compiled[i];
	/* Stable order by `order` (insertion sort: a handful of entries). */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && list[j - 1]->order > list[j]->order; j--) {
			const Reconciler *t = list[j];
			list[j] = list[j - 1];
			list[j - 1] = t;
		}
	list[n] = NULL;
	built = true;
	return list;
}
