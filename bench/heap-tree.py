#!/usr/bin/env python3
"""Print heaptrack's collapsed stacks (heaptrack_print --print-flamegraph) as a tree of call
sites, top down, with the MiB below each; branches under THRESHOLD MiB are left out, chains
of a single child are joined with ' > ', and frames of the standard library's collections
and allocator are hidden.

usage: bench/heap-tree.py STACKS [THRESHOLD_MIB=2]
"""
import sys

HIDE = ('(mod.rs)', '(alloc.rs)', '(iterator.rs)', '(option.rs)', '(local.rs)', '(context.rs)',
        '(runtime.rs)', '(map.rs)', 'spec_', '(raw_vec', '(unix.rs)')


def main():
    path = sys.argv[1]
    thr = float(sys.argv[2] if len(sys.argv) > 2 else 2) * 2**20
    root = {}
    total = 0
    for line in open(path):
        stack, _, n = line.rstrip().rpartition(' ')
        if not n.isdigit():
            continue
        total += int(n)
        node = root
        for frame in (f for f in stack.split(';') if f):
            child = node.setdefault(frame, [0, {}])
            child[0] += int(n)
            node = child[1]
    print(f'{total / 2**20:.1f} MiB in all')

    def show(node, indent):
        for name, (n, kids) in sorted(node.items(), key=lambda kv: -kv[1][0]):
            if n < thr:
                continue
            path = [name]
            while True:
                big = [kv for kv in kids.items() if kv[1][0] >= thr]
                if len(big) == 1 and big[0][1][0] == n:
                    name, (n, kids) = big[0]
                    path.append(name)
                else:
                    break
            shown = [p for p in path if not any(h in p for h in HIDE)] or path[-1:]
            print(f'{n / 2**20:8.1f} ' + ' ' * indent + ' > '.join(shown[-4:])[:230])
            show(kids, indent + 2)

    show(root, 0)


if __name__ == '__main__':
    try:
        main()
    except BrokenPipeError:
        pass
