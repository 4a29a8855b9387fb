// Package e2e runs Portcullis in Kubernetes mode against the local control
// plane of testenv/ (a real kube-apiserver, etcd, kube-controller-manager and
// the node agent). Driven by scripts/test-kube, which starts the environment
// and sets KUBECONFIG, PORTCULLIS_REPO and TESTENV_STATE.
//
// The tests share one cluster and run in order: they install the CRDs and the
// chart's objects (deploy/manifests/portcullis.yaml) step by step.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	sysNS   = "portcullis-system"
	appNS   = "e2e"
	timeout = 90 * time.Second
)

var (
	kc     *kubernetes.Clientset
	dyn    *dynamic.DynamicClient
	mapper *restmapper.DeferredDiscoveryRESTMapper
	repo   string
	state  string
)

var (
	gwGVR    = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	httpGVR  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	tcpGVR   = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "tcproutes"}
	classGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
)

func TestMain(m *testing.M) {
	cfgPath := os.Getenv("KUBECONFIG")
	repo, state = os.Getenv("PORTCULLIS_REPO"), os.Getenv("TESTENV_STATE")
	if cfgPath == "" || repo == "" {
		fmt.Println("skipping: KUBECONFIG and PORTCULLIS_REPO are set by scripts/test-kube")
		os.Exit(0)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cfgPath)
	if err != nil {
		panic(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	kc = kubernetes.NewForConfigOrDie(cfg)
	dyn = dynamic.NewForConfigOrDie(cfg)
	mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	os.Exit(m.Run())
}

// apply server-side-applies every object of the YAML files (multi-document).
func apply(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		applyYAML(t, b)
	}
}

func applyYAML(t *testing.T, b []byte) {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatal(err)
		}
		if len(o.Object) == 0 {
			continue
		}
		applyObject(t, &o)
	}
}

func applyObject(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	gvk := o.GroupVersionKind()
	var m *meta.RESTMapping
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil || time.Now().After(deadline) {
			break
		}
		mapper.Reset() // a CRD just installed
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		ri = dyn.Resource(m.Resource).Namespace(ns)
	}
	o.SetManagedFields(nil)
	o.SetResourceVersion("")
	if _, err := ri.Apply(context.Background(), o.GetName(), o, metav1.ApplyOptions{FieldManager: "portcullis-e2e", Force: true}); err != nil {
		t.Fatalf("apply %s %s/%s: %v", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
}

func eventually(t *testing.T, what string, d time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, detail := f()
		if ok {
			return
		}
		if detail != "" {
			last = detail
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", d, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func crdFiles(channel string, kinds ...string) []string {
	var out []string
	for _, k := range kinds {
		out = append(out, filepath.Join(repo, "third_party/gateway-api/v1.6.1/config/crd", channel, "gateway.networking.k8s.io_"+k+".yaml"))
	}
	return out
}

func controllerPods(t *testing.T) []corev1.Pod {
	t.Helper()
	l, err := kc.CoreV1().Pods(sysNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portcullis-controller"})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitControllersReady(t *testing.T, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, fmt.Sprintf("%d ready controller pods", n), timeout, func() (bool, string) {
		pods = controllerPods(t)
		r := 0
		for i := range pods {
			if ready(&pods[i]) {
				r++
			}
		}
		return r == n && len(pods) == n, fmt.Sprintf("%d pods, %d ready", len(pods), r)
	})
	return pods
}

func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func readyz(p *corev1.Pod) string {
	_, body, _ := get("http://" + p.Status.PodIP + ":9901/readyz")
	return body
}

// restartControllers deletes the controller pods and waits for two new ready ones.
// waitDiscovered waits until the API server's discovery lists every resource
// (plural) at the group version. A CRD is served a moment after it is
// created; a controller that starts before then does not watch the kind
// (it says so on /readyz, and watches it after a restart).
func waitDiscovered(t *testing.T, gv string, plurals ...string) {
	t.Helper()
	eventually(t, "discovery of "+gv, timeout, func() (bool, string) {
		l, err := kc.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil {
			return false, err.Error()
		}
		have := map[string]bool{}
		for _, r := range l.APIResources {
			have[r.Name] = true
		}
		for _, p := range plurals {
			if !have[p] {
				return false, "not yet served: " + p
			}
		}
		return true, ""
	})
}

func restartControllers(t *testing.T) []corev1.Pod {
	t.Helper()
	old := map[string]bool{}
	for _, p := range controllerPods(t) {
		old[p.Name] = true
		_ = kc.CoreV1().Pods(sysNS).Delete(context.Background(), p.Name, metav1.DeleteOptions{})
	}
	var pods []corev1.Pod
	eventually(t, "new ready controller pods", timeout, func() (bool, string) {
		pods = controllerPods(t)
		n := 0
		for i := range pods {
			if !old[pods[i].Name] && ready(&pods[i]) {
				n++
			}
		}
		return n == 2 && len(pods) == 2, fmt.Sprintf("%d new ready of %d", n, len(pods))
	})
	return pods
}

func podLog(p *corev1.Pod) string {
	if state == "" {
		return ""
	}
	dirs, _ := filepath.Glob(filepath.Join(state, "node", "pods", p.Namespace+"_"+p.Name+"_*"))
	var b strings.Builder
	for _, d := range dirs {
		logs, _ := filepath.Glob(filepath.Join(d, "*.log"))
		for _, l := range logs {
			x, _ := os.ReadFile(l)
			b.Write(x)
		}
	}
	return b.String()
}

func condition(obj map[string]any, path []string, typ string) map[string]any {
	v, _, _ := unstructured.NestedSlice(obj, path...)
	for _, c := range v {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}

func getObj(t *testing.T, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if ns != "" {
		ri = dyn.Resource(gvr).Namespace(ns)
	}
	o, err := ri.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	return o
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
