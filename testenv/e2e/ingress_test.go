package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Ingresses served directly in Kubernetes mode (docs/kubernetes.md,
// "Ingress"). Self-contained, so `scripts/test-kube -run Ingress` runs them
// alone: they install what they need (idempotent after the earlier tests).

const ingressNS = "e2e-ingress"

// The objects of both tests; also the input of `import ingress -f`, which must
// convert them exactly as `import ingress --from-cluster` converts what the
// cluster holds. The IngressClass portcullis is the chart's (same spec here).
var ingressObjects = `
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: e2e-ingress}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080, targetPort: 3000}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: e2e-ingress
  annotations:
    nginx.ingress.kubernetes.io/configuration-snippet: 'more_set_headers "x: y";'
spec:
  ingressClassName: portcullis
  rules:
    - host: web.example.com
      http:
        paths:
          - {path: /app, pathType: Prefix, backend: {service: {name: echo, port: {name: http}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: e2e-ingress}
spec:
  ingressClassName: nginx
  rules:
    - host: theirs.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 8080}}}}
`

var ingressBackend = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: e2e-ingress}
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
`

func ingressSetup(t *testing.T) {
	t.Helper()
	applyYAML(t, []byte(namespaceYAML(sysNS)+"---\n"+namespaceYAML(ingressNS)))
	files, _ := filepath.Glob(filepath.Join(repo, "third_party/gateway-api/v1.6.1/config/crd/experimental/*.yaml"))
	var crds []string
	for _, f := range files {
		if !strings.HasSuffix(f, "kustomization.yaml") && !strings.Contains(f, "vap_") {
			crds = append(crds, f)
		}
	}
	apply(t, crds...)
	waitDiscovered(t, "gateway.networking.k8s.io/v1", "gatewayclasses", "gateways", "httproutes", "tcproutes", "udproutes", "tlsroutes", "listenersets")
	apply(t, filepath.Join(repo, "deploy/manifests/portcullis.yaml"))
	waitControllersReady(t, 2)
	applyYAML(t, []byte(ingressBackend))
	applyYAML(t, []byte(ingressObjects))
}

var ingressGVRPath = "/apis/networking.k8s.io/v1/namespaces/" + ingressNS + "/ingresses/"

// loadBalancer returns an Ingress's status.loadBalancer.ingress.
func loadBalancer(t *testing.T, name string) []map[string]any {
	t.Helper()
	raw, err := kc.RESTClient().Get().AbsPath(ingressGVRPath + name).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ing struct {
		Status struct {
			LoadBalancer struct {
				Ingress []map[string]any `json:"ingress"`
			} `json:"loadBalancer"`
		} `json:"status"`
	}
	if err := json.Unmarshal(raw, &ing); err != nil {
		t.Fatal(err)
	}
	return ing.Status.LoadBalancer.Ingress
}

func getHost(url, host string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// An Ingress of class portcullis gets a proxy provisioned for its
// IngressClass (owned by the IngressClass, in the controller's namespace),
// is reachable through it (a named Service port, Prefix path), reports
// the annotation it does not honour in a Warning event, and its status.loadBalancer is the proxy Service's address. An Ingress of
// another class is left alone: no status, and its host is not served.
func Test13IngressServedThroughProvisionedProxy(t *testing.T) {
	ingressSetup(t)
	const proxy = "portcullis-portcullis-ingress"
	var ip string
	eventually(t, "Ingress web's status.loadBalancer", 2*timeout, func() (bool, string) {
		lb := loadBalancer(t, "web")
		if len(lb) == 0 {
			return false, "empty"
		}
		ip, _ = lb[0]["ip"].(string)
		return ip != "", js(lb)
	})
	svc, err := kc.CoreV1().Services(sysNS).Get(context.Background(), proxy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lbs := svc.Status.LoadBalancer.Ingress; len(lbs) == 0 || lbs[0].IP != ip {
		t.Errorf("Ingress address %s, proxy Service status %s", ip, js(svc.Status))
	}
	class, err := kc.NetworkingV1().IngressClasses().Get(context.Background(), "portcullis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := kc.AppsV1().Deployments(sysNS).Get(context.Background(), proxy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o := dep.OwnerReferences; len(o) != 1 || o[0].Kind != "IngressClass" || o[0].UID != class.UID {
		t.Errorf("proxy Deployment owners %s, want the IngressClass %s", js(o), class.UID)
	}
	eventually(t, "a 200 from echo through the Ingress's proxy", timeout, func() (bool, string) {
		code, body, err := getHost("http://"+ip+"/app/x", "web.example.com")
		if err != nil {
			return false, err.Error()
		}
		var echo struct{ Path, Namespace string }
		_ = json.Unmarshal([]byte(body), &echo)
		return code == 200 && echo.Path == "/app/x" && echo.Namespace == ingressNS, fmt.Sprintf("%d %s", code, body)
	})
	// Outside the Ingress's paths, and another class's host: not served.
	if code, body, err := getHost("http://"+ip+"/other", "web.example.com"); err != nil || code != 404 {
		t.Errorf("path outside the Ingress: %d %v %s", code, err, body)
	}
	if code, body, err := getHost("http://"+ip+"/", "theirs.example.com"); err != nil || code != 404 {
		t.Errorf("the nginx-class Ingress's host through Portcullis: %d %v %s", code, err, body)
	}
	// The other class's Ingress has no status and no proxy; give the
	// controller a few more passes (a write would have come with web's).
	time.Sleep(2 * time.Second)
	if lb := loadBalancer(t, "theirs"); len(lb) != 0 {
		t.Errorf("Ingress of class nginx got a status: %s", js(lb))
	}
	deps, err := kc.AppsV1().Deployments(sysNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portcullis-proxy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 1 {
		var names []string
		for _, d := range deps.Items {
			names = append(names, d.Name)
		}
		t.Errorf("proxies in %s: %v, want only %s", sysNS, names, proxy)
	}
	// What is not honoured is a Warning event on the Ingress.
	eventually(t, "a NotHonoured event on Ingress web", timeout, func() (bool, string) {
		evs, err := kc.CoreV1().Events(ingressNS).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Type == "Warning" && e.Reason == "NotHonoured" && strings.Contains(e.Message, "configuration-snippet is not honoured") {
				return true, ""
			}
		}
		return false, js(evs.Items)
	})
	// Derived objects are not written to the API.
	routes, err := dyn.Resource(httpGVR).Namespace(ingressNS).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(routes.Items) != 0 {
		t.Errorf("HTTPRoutes in %s: %v %d", ingressNS, err, len(routes.Items))
	}
	if gw := getObj(t, gwGVR, sysNS, "portcullis"); gw != nil {
		t.Errorf("a derived Gateway was created in the API: %s", js(gw.Object))
	}
}

// `portcullis import ingress --from-cluster` converts what the cluster holds
// exactly as `import ingress -f` converts the same objects from a file.
func Test14IngressImportFromCluster(t *testing.T) {
	bin := os.Getenv("PORTCULLIS_BIN")
	if bin == "" {
		t.Fatal("PORTCULLIS_BIN is set by scripts/test-kube")
	}
	if _, err := kc.NetworkingV1().Ingresses(ingressNS).Get(context.Background(), "web", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		ingressSetup(t)
	}
	file := filepath.Join(t.TempDir(), "ingresses.yaml")
	if err := os.WriteFile(file, []byte(ingressObjects), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Env = os.Environ()
		if err := cmd.Run(); err != nil {
			t.Fatalf("portcullis %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	fromFile := run("import", "ingress", "-f", file)
	fromCluster := run("import", "ingress", "--from-cluster", "--namespace", ingressNS)
	if fromCluster != fromFile {
		t.Errorf("--from-cluster differs from the files:\n--- files\n%s\n--- cluster\n%s", fromFile, fromCluster)
	}
	for _, want := range []string{"kind: HTTPRoute", "name: web-web-example-com", "theirs-theirs-example-com"} {
		if !strings.Contains(fromCluster, want) {
			t.Errorf("--from-cluster output lacks %q:\n%s", want, fromCluster)
		}
	}
}
