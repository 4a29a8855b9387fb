package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

const echoImage = "registry.k8s.io/gateway-api/echo-basic:v1.6.1"

var backend = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: e2e}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
        - name: echo
          image: ` + echoImage + `
          env:
            - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
            - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
          ports: [{name: http, containerPort: 3000}]
          readinessProbe: {httpGet: {path: /, port: 3000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: e2e}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080, targetPort: 3000}]
`

func gatewayYAML(extra string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: e2e}
spec:
  gatewayClassName: portcullis
  listeners:
    - {name: http, port: 80, protocol: HTTP}` + extra + "\n"
}

func routeYAML(prefix string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: e2e}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
    - matches: [{path: {type: PathPrefix, value: ` + prefix + `}}]
      backendRefs: [{name: echo, port: 8080}]
`
}

func namespaceYAML(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + "}\n"
}

// Only the standard-channel kinds a v1.5-era install has: no TCPRoute, UDPRoute,
// TLSRoute or ListenerSet CRDs. The controller must become ready anyway and
// say what it does not watch (before the fix it listed TCPRoute at v1alpha2
// forever, never synced, and was restarted by its liveness probe).
func Test01ControllerWithoutL4CRDs(t *testing.T) {
	applyYAML(t, []byte(namespaceYAML(sysNS)+"---\n"+namespaceYAML(appNS)))
	apply(t, crdFiles("standard", "gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies")...)
	apply(t, filepath.Join(repo, "deploy/manifests/portcullis.yaml"))
	pods := waitControllersReady(t, 2)
	for i := range pods {
		body := readyz(&pods[i])
		for _, k := range []string{"TCPRoute", "UDPRoute", "TLSRoute", "ListenerSet"} {
			if !strings.Contains(body, k) {
				t.Errorf("%s /readyz does not name %s: %q", pods[i].Name, k, body)
			}
		}
		if log := podLog(&pods[i]); state != "" && !strings.Contains(log, "not watching") {
			t.Errorf("%s log does not say what it skips:\n%s", pods[i].Name, log)
		}
		if pods[i].Spec.ServiceAccountName != "portcullis-controller" {
			t.Errorf("controller runs as %q", pods[i].Spec.ServiceAccountName)
		}
	}
	eventually(t, "GatewayClass portcullis Accepted", timeout, func() (bool, string) {
		gc := getObj(t, classGVR, "", "portcullis")
		c := condition(gc.Object, []string{"status", "conditions"}, "Accepted")
		return c != nil && c["status"] == "True", js(c)
	})
}

func gatewayAddress(t *testing.T) string {
	t.Helper()
	var addr string
	eventually(t, "Gateway gw Programmed with an address", 2*timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, appNS, "gw")
		if gw == nil {
			return false, "no gateway"
		}
		c := condition(gw.Object, []string{"status", "conditions"}, "Programmed")
		addrs, _, _ := unstructured.NestedSlice(gw.Object, "status", "addresses")
		if c == nil || c["status"] != "True" || len(addrs) == 0 {
			return false, js(gw.Object["status"])
		}
		addr = addrs[0].(map[string]any)["value"].(string)
		return true, ""
	})
	return addr
}

func Test02RouteReachable(t *testing.T) {
	applyYAML(t, []byte(backend))
	applyYAML(t, []byte(gatewayYAML("")))
	applyYAML(t, []byte(routeYAML("/")))
	addr := gatewayAddress(t)
	eventually(t, "a 200 from the echo backend through the Gateway", timeout, func() (bool, string) {
		code, body, err := get("http://" + addr + "/hello")
		if err != nil {
			return false, err.Error()
		}
		var echo struct {
			Path, Namespace, Pod string
		}
		_ = json.Unmarshal([]byte(body), &echo)
		return code == 200 && echo.Path == "/hello" && echo.Namespace == appNS && strings.HasPrefix(echo.Pod, "echo-"), fmt.Sprintf("%d %s", code, body)
	})
	// Container logs through the API server (the node agent's kubelet endpoint).
	pods, err := kc.CoreV1().Pods(appNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("echo pods: %v", err)
	}
	logs, err := kc.CoreV1().Pods(appNS).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "echo"}).DoRaw(context.Background())
	if err != nil || !strings.Contains(string(logs), "/hello") {
		t.Errorf("pod logs through the API server: %v %q", err, logs)
	}
	// The provisioned proxy runs as its own ServiceAccount, with a projected token.
	dep, err := kc.AppsV1().Deployments(appNS).Get(context.Background(), "gw-portcullis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Template.Spec.ServiceAccountName != "gw-portcullis" {
		t.Errorf("proxy ServiceAccount %q", dep.Spec.Template.Spec.ServiceAccountName)
	}
}

// routeGenerationObserved waits until every condition of our parent status carries the route's generation.
func routeGenerationObserved(t *testing.T, wantGen int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("HTTPRoute conditions at observedGeneration %d", wantGen), timeout, func() (bool, string) {
		r := getObj(t, httpGVR, appNS, "echo")
		if r.GetGeneration() != wantGen {
			return false, fmt.Sprintf("generation %d", r.GetGeneration())
		}
		parents, _, _ := unstructured.NestedSlice(r.Object, "status", "parents")
		for _, p := range parents {
			pm := p.(map[string]any)
			if pm["controllerName"] != "portcullis.dev/gateway-controller" {
				continue
			}
			conds, _ := pm["conditions"].([]any)
			if len(conds) == 0 {
				return false, js(pm)
			}
			for _, c := range conds {
				cm := c.(map[string]any)
				if g, _ := cm["observedGeneration"].(int64); g != wantGen {
					return false, js(pm)
				}
				if cm["type"] == "Accepted" && cm["status"] != "True" {
					return false, js(pm)
				}
			}
			return true, ""
		}
		return false, js(r.Object["status"])
	})
}

func Test03ObservedGeneration(t *testing.T) {
	routeGenerationObserved(t, getObj(t, httpGVR, appNS, "echo").GetGeneration())
	gen := getObj(t, httpGVR, appNS, "echo").GetGeneration()
	applyYAML(t, []byte(routeYAML("/v2")))
	routeGenerationObserved(t, gen+1)
	addr := gatewayAddress(t)
	eventually(t, "the new rule serves, the old path 404s", timeout, func() (bool, string) {
		c1, _, _ := get("http://" + addr + "/v2/x")
		c2, _, _ := get("http://" + addr + "/hello")
		return c1 == 200 && c2 == 404, fmt.Sprintf("%d %d", c1, c2)
	})
	// Gateway: a spec change is observed on the Gateway's and the listeners' conditions.
	gw := getObj(t, gwGVR, appNS, "gw")
	ggen := gw.GetGeneration()
	applyYAML(t, []byte(gatewayYAML("\n    - {name: http2, port: 8081, protocol: HTTP}")))
	eventually(t, "Gateway conditions at the new generation", timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, appNS, "gw")
		if gw.GetGeneration() != ggen+1 {
			return false, "generation"
		}
		for _, typ := range []string{"Accepted", "Programmed"} {
			c := condition(gw.Object, []string{"status", "conditions"}, typ)
			if c == nil || c["observedGeneration"] != ggen+1 {
				return false, js(gw.Object["status"])
			}
		}
		ls, _, _ := unstructured.NestedSlice(gw.Object, "status", "listeners")
		if len(ls) != 2 {
			return false, js(ls)
		}
		for _, l := range ls {
			for _, c := range l.(map[string]any)["conditions"].([]any) {
				if c.(map[string]any)["observedGeneration"] != ggen+1 {
					return false, js(ls)
				}
			}
		}
		return true, ""
	})
}

// The controller works with the chart's ServiceAccount and RBAC only: no
// forbidden answers in its log, and the ServiceAccount is not an admin.
func Test04RBAC(t *testing.T) {
	sa := "system:serviceaccount:" + sysNS + ":portcullis-controller"
	for _, a := range []authzv1.ResourceAttributes{
		{Verb: "delete", Resource: "pods", Namespace: appNS},
		{Verb: "get", Resource: "secrets", Namespace: sysNS, Name: "x", Group: ""},
		{Verb: "patch", Resource: "httproutes", Group: "gateway.networking.k8s.io", Namespace: appNS},
	} {
		r, err := kc.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sysNS, "system:authenticated"}, ResourceAttributes: &a},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := a.Verb == "get" // the chart grants get on Secrets (referenced ones are read), nothing else here
		if r.Status.Allowed != want {
			t.Errorf("%s %s/%s allowed=%v, want %v", a.Verb, a.Group, a.Resource, r.Status.Allowed, want)
		}
	}
	for _, p := range controllerPods(t) {
		log := strings.ToLower(podLog(&p))
		if strings.Contains(log, "forbidden") {
			t.Errorf("%s was refused something:\n%s", p.Name, log)
		}
	}
}

func tcpRoute(apiVersion string) string {
	return `
apiVersion: ` + apiVersion + `
kind: TCPRoute
metadata: {name: tcp, namespace: e2e}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
`
}

func tcpRouteAccepted(t *testing.T) {
	t.Helper()
	eventually(t, "TCPRoute Accepted", timeout, func() (bool, string) {
		r := getObj(t, tcpGVR, appNS, "tcp")
		parents, _, _ := unstructured.NestedSlice(r.Object, "status", "parents")
		for _, p := range parents {
			c := condition(p.(map[string]any), []string{"conditions"}, "Accepted")
			if c != nil && c["status"] == "True" && c["observedGeneration"] == r.GetGeneration() {
				return true, ""
			}
		}
		return false, js(r.Object["status"])
	})
}

// The whole v1.6.1 standard channel: TCPRoute, UDPRoute and TLSRoute are served
// at v1 only; the controller watches them there and writes their statuses.
func Test05StandardChannel(t *testing.T) {
	apply(t, crdFiles("standard", "tcproutes", "udproutes", "tlsroutes", "listenersets")...)
	waitDiscovered(t, "gateway.networking.k8s.io/v1", "tcproutes", "udproutes", "tlsroutes", "listenersets")
	pods := restartControllers(t)
	for i := range pods {
		if body := readyz(&pods[i]); body != "ok\n" {
			t.Errorf("%s /readyz: %q", pods[i].Name, body)
		}
	}
	applyYAML(t, []byte(gatewayYAML("\n    - {name: http2, port: 8081, protocol: HTTP}\n    - {name: tcp, port: 9000, protocol: TCP}")))
	applyYAML(t, []byte(tcpRoute("gateway.networking.k8s.io/v1")))
	tcpRouteAccepted(t)
	_, err := dyn.Resource(tcpGVR.GroupResource().WithVersion("v1alpha2")).Namespace(appNS).List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the standard channel should not serve TCPRoute v1alpha2: %v", err)
	}
}

// Upgrading to the experimental channel (v1alpha2 served again, plus the
// experimental fields): the controller keeps working.
func Test06ExperimentalChannel(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repo, "third_party/gateway-api/v1.6.1/config/crd/experimental/*.yaml"))
	var crds []string
	for _, f := range files {
		if !strings.HasSuffix(f, "kustomization.yaml") && !strings.Contains(f, "vap_") {
			crds = append(crds, f)
		}
	}
	apply(t, crds...)
	waitDiscovered(t, "gateway.networking.k8s.io/v1", "tcproutes", "udproutes", "tlsroutes", "listenersets")
	waitDiscovered(t, "gateway.networking.k8s.io/v1alpha2", "tcproutes", "udproutes")
	pods := restartControllers(t)
	for i := range pods {
		if body := readyz(&pods[i]); body != "ok\n" {
			t.Errorf("%s /readyz: %q", pods[i].Name, body)
		}
	}
	// An object written at v1alpha2 is seen (the controller watches v1) and accepted.
	r := getObj(t, tcpGVR, appNS, "tcp")
	_ = dyn.Resource(tcpGVR).Namespace(appNS).Delete(context.Background(), "tcp", metav1.DeleteOptions{})
	_ = r
	applyYAML(t, []byte(tcpRoute("gateway.networking.k8s.io/v1alpha2")))
	tcpRouteAccepted(t)
	addr := gatewayAddress(t)
	eventually(t, "HTTP still served", timeout, func() (bool, string) {
		c, _, _ := get("http://" + addr + "/v2/y")
		return c == 200, fmt.Sprint(c)
	})
}

func leaseHolder(t *testing.T) string {
	l, err := kc.CoordinationV1().Leases(sysNS).Get(context.Background(), "portcullis-controller", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// Two replicas elect one leader; when it stops the other takes over and writes statuses.
func Test07LeaderHandover(t *testing.T) {
	pods := waitControllersReady(t, 2)
	var holder string
	eventually(t, "a Lease holder among the replicas", timeout, func() (bool, string) {
		holder = leaseHolder(t)
		return holder == pods[0].Name || holder == pods[1].Name, holder
	})
	other := pods[0].Name
	if other == holder {
		other = pods[1].Name
	}
	if err := kc.CoreV1().Pods(sysNS).Delete(context.Background(), holder, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "the other replica (or the replacement) takes the Lease", timeout, func() (bool, string) {
		h := leaseHolder(t)
		return h != "" && h != holder, h
	})
	t.Logf("Lease moved from %s to %s in %v (the stopping leader releases it)", holder, leaseHolder(t), time.Since(start).Round(100*time.Millisecond))
	gen := getObj(t, httpGVR, appNS, "echo").GetGeneration()
	applyYAML(t, []byte(routeYAML("/v3")))
	routeGenerationObserved(t, gen+1)
	_ = other
}

// Deleting a Gateway deletes its proxy (owned objects, removed by the garbage collector).
func Test08GatewayDeletionCollectsProxy(t *testing.T) {
	if err := dyn.Resource(gwGVR).Namespace(appNS).Delete(context.Background(), "gw", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the proxy Deployment, Service, ServiceAccount and pods gone", timeout, func() (bool, string) {
		ctx := context.Background()
		_, e1 := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		_, e2 := kc.CoreV1().Services(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		_, e3 := kc.CoreV1().ServiceAccounts(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		pods, _ := kc.CoreV1().Pods(appNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portcullis-proxy"})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2) && apierrors.IsNotFound(e3) && len(pods.Items) == 0,
			fmt.Sprintf("deployment %v, service %v, sa %v, %d pods", e1, e2, e3, len(pods.Items))
	})
}

// A pod whose image has no local binary stays Pending with an event saying why.
func Test09UnmappedImagePending(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unmapped", Namespace: appNS},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/nothing:1"}}},
	}
	if _, err := kc.CoreV1().Pods(appNS).Create(context.Background(), p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	eventually(t, "an ImageNotMapped event", timeout, func() (bool, string) {
		evs, _ := kc.CoreV1().Events(appNS).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=unmapped"})
		for _, e := range evs.Items {
			if e.Reason == "ImageNotMapped" {
				return true, ""
			}
		}
		return false, ""
	})
	got, _ := kc.CoreV1().Pods(appNS).Get(context.Background(), "unmapped", metav1.GetOptions{})
	if got.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s", got.Status.Phase)
	}
	_ = kc.CoreV1().Pods(appNS).Delete(context.Background(), "unmapped", metav1.DeleteOptions{})
	_ = types.UID("")
}
