/* crd.h - the kinds' schemas (the YAML files in crds/), read at run time.
 *
 * A CRD file is one YAML document:
 *
 *   apiVersion: zlh.dev/v1
 *   kind: GameServer          # the document kind, exact case
 *   plural: gameservers       # for zlhctl get gameservers
 *   short: gs                 # for zlhctl get gs
 *   schema: {type: object, ...}   # the schema of the document's spec
 *
 * The schema language (also implemented in PL/pgSQL by zlh.apply_server, so
 * keep it small) is described at the top of crds/gameserver.yaml. Loading
 * checks the schema itself: unknown keywords, keywords that do not fit the
 * type, patterns that do not compile, defaults and enum values that do not
 * validate are all located errors. */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "cleanup.h"
#include "specs/errors.h"

typedef struct Crd {
	char *kind; /* "GameServer" */
	char *plural; /* "gameservers" */
	char *short_name; /* "gs" */
	char *api_version; /* "zlh.dev/v1" */
	json_t *schema; /* the `schema` object as typed JSON (owned) */
	struct RegexCache *regex; /* private: compiled patterns of schema */
} Crd;

typedef struct CrdSet {
	Crd *items; /* owned, sorted by kind */
	size_t n;
} CrdSet;

/* Finds the CRD directory: flag_dir (the --crds flag; NULL when not given),
 * else $ZLH_CRDS_DIR (when set and not empty), else ZLH_SOURCE_DIR "/crds",
 * else ZLH_PREFIX "/share/zlh-controller/crds". An explicit flag or
 * environment value that is not a directory is an error (-ENOENT), not a
 * reason to fall through; of the two built-in places the first that is a
 * directory wins. 0 or -ENOENT/-ENOMEM; *ret_dir (new) set on success. */
int crd_dir_find(const char *flag_dir, char **ret_dir) _must_check_;

/* Reads every *.yaml in dir (sorted by name). Problems go to errs (located);
 * a kind, plural or short name used twice is an error. 0, -EINVAL (errors
 * added), -ENOENT (no such directory or no *.yaml in it), -ENOMEM.
 * *ret (new) set on success only. */
int crd_set_load(const char *dir, CrdSet **ret, SpecErrors *errs) _must_check_;

/* Same from memory: datas[i] (NUL-terminated, borrowed) is the text of the
 * file named files[i] (used in errors). Same returns. */
int crd_set_load_data(const char *const *files, const char *const *datas, size_t n, CrdSet **ret,
                      SpecErrors *errs) _must_check_;

/* Frees the set and everything in it; accepts NULL; returns NULL. */
CrdSet *crd_set_free(CrdSet *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(CrdSet *, crd_set_free)
#define _cleanup_crd_set_ _cleanup_(crd_set_freep)

/* The CRD whose kind, plural or short name equals name, ignoring case
 * (borrowed, valid while s lives), or NULL. */
const Crd *crd_set_find(const CrdSet *s, const char *name);

/* The CRD whose kind is exactly kind (borrowed), or NULL. */
const Crd *crd_set_find_kind(const CrdSet *s, const char *kind);

/* New JSON array, one object per kind:
 *   [{"kind":"GameServer","apiVersion":"zlh.dev/v1","plural":"gameservers",
 *     "short":"gs","schema":{...}}]
 * NULL on ENOMEM. */
json_t *crd_set_to_json(const CrdSet *s);
