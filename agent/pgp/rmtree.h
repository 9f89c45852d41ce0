/*
 * Removing a GnuPG home: the helper empties its own before it exits, the
 * agent removes what is left (the empty directory; more only when the
 * helper was killed).
 */
#ifndef RAMKEY_PGP_RMTREE_H
#define RAMKEY_PGP_RMTREE_H

/* Remove name (under dfd) and everything below it, never following
 * links. 0 or -1 (errno). */
int pgp_rm_tree_at(int dfd, const char *name);

/* Remove everything inside the directory path, but not path itself. */
int pgp_empty_dir(const char *path);

#endif
