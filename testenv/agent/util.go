package main

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// ImageMap maps container images to local binaries.
type ImageMap []imageEntry

type imageEntry struct{ image, binary string }

// ParseImages parses "image=binary,image=binary". An entry matches an image
// with the same repository (any tag or digest) or exactly the same reference.
func ParseImages(s string) (ImageMap, error) {
	var m ImageMap
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		img, bin, ok := strings.Cut(kv, "=")
		if !ok || img == "" || bin == "" {
			return nil, fmt.Errorf("bad entry %q: want image=binary", kv)
		}
		m = append(m, imageEntry{img, bin})
	}
	return m, nil
}

// Repository strips the tag and digest of an image reference.
func Repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		image = image[:i]
	}
	return image
}

// Binary is the binary an image runs as, if mapped.
func (m ImageMap) Binary(image string) (string, bool) {
	repo := Repository(image)
	for _, e := range m {
		if e.image == image || e.image == repo {
			return e.binary, true
		}
	}
	return "", false
}

// IPAllocator hands out the host addresses of an IPv4 /24 (x.y.z.1 to x.y.z.254).
type IPAllocator struct {
	mu     sync.Mutex
	prefix netip.Prefix
	used   map[netip.Addr]bool
}

// NewIPAllocator allocates from a /24 such as "198.18.0.0/24".
func NewIPAllocator(cidr string) (*IPAllocator, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() != 24 {
		return nil, fmt.Errorf("%q is not an IPv4 /24", cidr)
	}
	return &IPAllocator{prefix: p.Masked(), used: map[netip.Addr]bool{}}, nil
}

// Alloc returns the lowest free address.
func (p *IPAllocator) Alloc() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ip := p.prefix.Addr()
	for i := 1; i < 255; i++ {
		ip = ip.Next()
		if !p.used[ip] {
			p.used[ip] = true
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("no free Pod IP in %s", p.prefix)
}

// Release frees an address.
func (p *IPAllocator) Release(ip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, err := netip.ParseAddr(ip); err == nil {
		delete(p.used, a)
	}
}

// FieldRef resolves a downward-API fieldPath of a pod running at ip.
func FieldRef(pod *corev1.Pod, path, ip string) (string, bool) {
	switch path {
	case "metadata.name":
		return pod.Name, true
	case "metadata.namespace":
		return pod.Namespace, true
	case "metadata.uid":
		return string(pod.UID), true
	case "spec.nodeName":
		return pod.Spec.NodeName, true
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, true
	case "status.podIP", "status.podIPs":
		return ip, true
	case "status.hostIP", "status.hostIPs":
		return "127.0.0.1", true
	}
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		v, found := pod.Labels[strings.TrimSuffix(k, "']")]
		return v, found
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		v, found := pod.Annotations[strings.TrimSuffix(k, "']")]
		return v, found
	}
	return "", false
}

// ContainerPort resolves a probe port (number or container port name).
func ContainerPort(c *corev1.Container, port string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort, true
		}
	}
	var n int32
	if _, err := fmt.Sscanf(port, "%d", &n); err == nil && n > 0 {
		return n, true
	}
	return 0, false
}

// HostsFile renders /etc/hosts for pods: each Service name → one ready address.
func HostsFile(services map[string]string) string {
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
	names := make([]string, 0, len(services))
	for k := range services {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		ns, name, _ := strings.Cut(k, "/")
		fmt.Fprintf(&b, "%s %s.%s.svc %s.%s.svc.cluster.local %s.%s\n", services[k], name, ns, name, ns, name, ns)
	}
	return b.String()
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// MountScript is the /bin/sh script run in the pod's mount namespace: it
// opens the program ($1) and the LD_PRELOAD shim ($2, may be empty) first,
// bind-mounts each (source, target) pair, then execs the program through its
// open file descriptor with the remaining arguments, so a volume mounted over
// the directory that holds the binaries (coredns mounts one at /root) does
// not hide them.
func MountScript(mounts [][2]string) string {
	var b strings.Builder
	b.WriteString("set -e\nexec 3<\"$1\"\nif [ -n \"$2\" ]; then exec 4<\"$2\"; fi\n")
	for _, m := range mounts {
		src, dst := shellQuote(m[0]), shellQuote(m[1])
		fmt.Fprintf(&b, "if [ -d %s ]; then mkdir -p %s; else mkdir -p \"$(dirname %s)\"; [ -e %s ] || : > %s; fi\n", src, dst, dst, dst, dst)
		fmt.Fprintf(&b, "mount --bind %s %s\n", src, dst)
	}
	b.WriteString("if [ -n \"$2\" ]; then export LD_PRELOAD=/proc/self/fd/4; fi\nshift 2\nexec /proc/self/fd/3 \"$@\"\n")
	return b.String()
}
