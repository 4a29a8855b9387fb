package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestImageMap(t *testing.T) {
	m, err := ParseImages("ghcr.io/portcullis-dev/portcullis=/bin/p, registry.k8s.io/gateway-api/echo-basic=/bin/e,exact:v1=/bin/x")
	if err != nil {
		t.Fatal(err)
	}
	for img, want := range map[string]string{
		"ghcr.io/portcullis-dev/portcullis:0.1.0":             "/bin/p",
		"ghcr.io/portcullis-dev/portcullis@sha256:abc":        "/bin/p",
		"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3": "/bin/e",
		"exact:v1":         "/bin/x",
		"exact:v2":         "",
		"localhost:5000/x": "",
		"registry.k8s.io/coredns/coredns:v1.12.2": "",
	} {
		got, ok := m.Binary(img)
		if got != want || ok != (want != "") {
			t.Errorf("%s: got %q %v, want %q", img, got, ok, want)
		}
	}
	if Repository("localhost:5000/a/b:tag") != "localhost:5000/a/b" {
		t.Error(Repository("localhost:5000/a/b:tag"))
	}
	if _, err := ParseImages("noequals"); err == nil {
		t.Error("want error")
	}
}

func TestIPAllocator(t *testing.T) {
	p, err := NewIPAllocator("198.18.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Alloc()
	b, _ := p.Alloc()
	if a != "198.18.0.1" || b != "198.18.0.2" {
		t.Fatalf("got %s %s", a, b)
	}
	p.Release(a)
	if c, _ := p.Alloc(); c != a {
		t.Fatalf("released address not reused: %s", c)
	}
	for i := 0; i < 252; i++ {
		if _, err := p.Alloc(); err != nil {
			t.Fatalf("alloc %d: %v", i, err)
		}
	}
	if ip, err := p.Alloc(); err == nil {
		t.Fatalf("allocated %s past .254", ip)
	}
	if _, err := NewIPAllocator("10.0.0.0/16"); err == nil {
		t.Fatal("non-/24 accepted")
	}
}

func TestFieldRefAndPorts(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "x"}}}
	for path, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "status.podIP": "198.18.0.1", "metadata.labels['app']": "x",
	} {
		if got, ok := FieldRef(pod, path, "198.18.0.1"); !ok || got != want {
			t.Errorf("%s: %q", path, got)
		}
	}
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9901}}}
	if p, ok := ContainerPort(c, "admin"); !ok || p != 9901 {
		t.Error("named port")
	}
	if p, ok := ContainerPort(c, "8080"); !ok || p != 8080 {
		t.Error("numbered port")
	}
	if _, ok := ContainerPort(c, "nope"); ok {
		t.Error("unknown name")
	}
}

func TestHostsFile(t *testing.T) {
	h := HostsFile(map[string]string{"portcullis-system/portcullis-controller": "198.18.0.3"})
	if !strings.Contains(h, "198.18.0.3 portcullis-controller.portcullis-system.svc portcullis-controller.portcullis-system.svc.cluster.local") {
		t.Error(h)
	}
}

// The mount script bind-mounts files and directories, then execs the program.
func TestMountScript(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for mount namespaces")
	}
	if err := exec.Command("unshare", "--mount", "--propagation", "private", "true").Run(); err != nil {
		t.Skip("no mount namespaces here")
	}
	d := t.TempDir()
	src := filepath.Join(d, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "token"), []byte("tok"), 0o644)
	os.WriteFile(filepath.Join(d, "hosts"), []byte("1.2.3.4 x\n"), 0o644)
	target := filepath.Join(d, "mnt", "secrets")
	script := MountScript([][2]string{{src, target}, {filepath.Join(d, "hosts"), "/etc/hosts"}})
	// The program lives in a directory a volume is mounted over: still runs.
	bindir := filepath.Join(d, "bin")
	os.MkdirAll(bindir, 0o755)
	sh, _ := os.ReadFile("/bin/sh")
	os.WriteFile(filepath.Join(bindir, "sh"), sh, 0o755)
	script = MountScript([][2]string{{src, target}, {filepath.Join(d, "hosts"), "/etc/hosts"}, {src, bindir}})
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "x",
		filepath.Join(bindir, "sh"), "", "-c", "cat "+target+"/token; grep -c 1.2.3.4 /etc/hosts").CombinedOutput()
	if err != nil || string(out) != "tok1\n" {
		t.Fatalf("%v: %q", err, out)
	}
	if b, _ := os.ReadFile("/etc/hosts"); strings.Contains(string(b), "1.2.3.4 x") {
		t.Fatal("the host's /etc/hosts changed")
	}
}
