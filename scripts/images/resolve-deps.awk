# resolve-deps.awk - pick a minimal install set from `apt-cache depends --recurse` output.
#
# Used by scripts/build-images.sh.  Input is the output of
#   apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
#       --no-breaks --no-replaces --no-enhances ROOT...
# which lists every package reachable through *any* alternative.  This script
# walks it again from the roots and keeps only what a real install needs:
#   * "A | B" groups: the first alternative is taken (like apt), unless one of
#     the alternatives is already selected;
#   * virtual packages ("<name>"): the first listed provider is taken, unless
#     one of the providers is already selected;
#   * a dependency group that names an excluded package anywhere is dropped
#     (the package is deliberately left out of the image, see EXCLUDE in
#     build-images.sh), and reported on stderr.
#
# Variables (awk -v): roots="pkg pkg ..."  excl="^(regex)$"
# Output: the selected package names, one per line, sorted.

function strip(n) {
    if (n ~ /^<.*>$/) n = substr(n, 2, length(n) - 2)
    sub(/:(any|native)$/, "", n)
    return n
}

/^[^ ]/ {
    cur = strip($1); known[cur] = 1; if (!(cur in ngroups)) ngroups[cur] = 0
    ingroup = 0
    next
}

/^ [ |](Pre)?Depends: / {
    isor = (substr($0, 2, 1) == "|")
    if (!ingroup) { g = ++ngroups[cur]; nalts[cur, g] = 0 }
    a = ++nalts[cur, g]
    alt[cur, g, a] = strip($2)
    virt[cur, g, a] = ($2 ~ /^<.*>$/)
    nprov[cur, g, a] = 0
    ingroup = isor
    next
}

/^    [^ ]/ {                       # provider of the virtual package just listed
    if (virt[cur, g, a]) prov[cur, g, a, ++nprov[cur, g, a]] = strip($1)
    next
}

END {
    n = split(roots, r, " ")
    qh = 0; qt = 0
    for (i = 1; i <= n; i++) {
        if (!(r[i] in known)) { print "resolve-deps: unknown package: " r[i] > "/dev/stderr"; bad = 1; continue }
        if (!(r[i] in sel)) { sel[r[i]] = 1; q[++qt] = r[i] }
    }
    while (qh < qt) {
        p = q[++qh]
        for (gi = 1; gi <= ngroups[p]; gi++) {
            done = 0; dropped = ""
            for (ai = 1; ai <= nalts[p, gi] && !done; ai++) {
                nm = alt[p, gi, ai]
                if (nm in sel) done = 1
                if (nm ~ excl && dropped == "") dropped = nm
                for (pi = 1; pi <= nprov[p, gi, ai]; pi++)
                    if (prov[p, gi, ai, pi] in sel) done = 1
            }
            if (done) continue
            if (dropped != "") {
                if (!((p, dropped) in said)) {
                    said[p, dropped] = 1
                    print "resolve-deps: left out " dropped " (needed by " p ")" > "/dev/stderr"
                }
                continue
            }
            choice = ""
            for (ai = 1; ai <= nalts[p, gi] && choice == ""; ai++) {
                nm = alt[p, gi, ai]
                if (!virt[p, gi, ai]) { choice = nm; break }
                for (pi = 1; pi <= nprov[p, gi, ai]; pi++)
                    if (prov[p, gi, ai, pi] !~ excl) { choice = prov[p, gi, ai, pi]; break }
            }
            if (choice == "") {
                print "resolve-deps: cannot satisfy a dependency of " p " (" alt[p, gi, 1] ")" > "/dev/stderr"
                bad = 1; continue
            }
            if (!(choice in known)) {
                print "resolve-deps: " p " needs " choice ", which apt does not know" > "/dev/stderr"
                bad = 1; continue
            }
            sel[choice] = 1; q[++qt] = choice
        }
    }
    if (bad) exit 1
    for (i = 1; i <= qt; i++) print q[i] | "sort"
    close("sort")
}
