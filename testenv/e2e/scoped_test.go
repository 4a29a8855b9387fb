package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A second release of the chart, rendered by the real Helm (testenv/helm,
// $HELM from scripts/test-kube), installed namespaced: it watches one
// namespace and reads Secrets there only, with Roles.
const (
	scopedRelease = "scoped"
	scopedSysNS   = "pc-scoped"
	scopedNS      = "e2e-scoped"
	unlistedNS    = "e2e-unlisted"
	scopedClass   = "portcullis-scoped"
	scopedSA      = "scoped-portcullis-controller"
)

const scopedValues = `{
  "replicas": 1,
  "controllerName": "portcullis.dev/scoped",
  "gatewayClass": {"name": "` + scopedClass + `"},
  "ingressClass": {"enabled": false},
  "watchNamespaces": ["` + scopedNS + `"],
  "secretNamespaces": ["` + scopedNS + `"]
}`

// helmTemplate renders the chart with values (JSON) by the real Helm.
func helmTemplate(t *testing.T, release, ns, values string) []byte {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Fatal("HELM is not set (scripts/test-kube builds helm with testenv/build.sh helm)")
	}
	f := filepath.Join(t.TempDir(), "values.json")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helm, "template", release, filepath.Join(repo, "deploy/helm/portcullis"), "--namespace", ns, "-f", f)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	return out
}

// tlsSecretYAML is a self-signed certificate for host, as a kubernetes.io/tls Secret.
func tlsSecretYAML(t *testing.T, ns, name, host string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {name: %s, namespace: %s}\nstringData:\n  tls.crt: %q\n  tls.key: %q\n", name, ns, crt, k)
}

func scopedGatewayYAML(ns string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ` + ns + `}
spec:
  gatewayClassName: ` + scopedClass + `
  listeners:
    - {name: http, port: 80, protocol: HTTP}
    - name: https
      port: 443
      protocol: HTTPS
      hostname: scoped.example.com
      tls: {certificateRefs: [{name: tls}]}
`
}

func allowed(t *testing.T, user string, a authzv1.ResourceAttributes) bool {
	t.Helper()
	r, err := kc.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &a},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

// The chart with watchNamespaces/secretNamespaces: the controller runs with
// Roles in the one namespace it watches (plus the small ClusterRole for
// cluster-scoped kinds). A route there is served (its HTTPS listener's
// Secret read through the Secrets Role); a Gateway of the same class in a
// namespace it does not watch is left alone; nothing is refused.
func Test18NamespacedInstall(t *testing.T) {
	ctx := context.Background()
	applyYAML(t, []byte(namespaceYAML(scopedSysNS)+"---\n"+namespaceYAML(scopedNS)+"---\n"+namespaceYAML(unlistedNS)))
	applyYAML(t, helmTemplate(t, scopedRelease, scopedSysNS, scopedValues))
	t.Cleanup(func() {
		_ = dyn.Resource(classGVR).Delete(ctx, scopedClass, metav1.DeleteOptions{})
		for _, ns := range []string{scopedNS, unlistedNS, scopedSysNS} {
			_ = kc.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
		_ = kc.RbacV1().ClusterRoleBindings().Delete(ctx, scopedSA, metav1.DeleteOptions{})
		_ = kc.RbacV1().ClusterRoles().Delete(ctx, scopedSA, metav1.DeleteOptions{})
	})

	// What the rendered RBAC allows, as the API server decides it.
	sa := "system:serviceaccount:" + scopedSysNS + ":" + scopedSA
	for _, c := range []struct {
		a    authzv1.ResourceAttributes
		want bool
	}{
		{authzv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: unlistedNS, Name: "tls"}, false},
		{authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: scopedNS, Name: "tls"}, true},
		{authzv1.ResourceAttributes{Verb: "watch", Resource: "secrets", Namespace: scopedNS}, true},
		{authzv1.ResourceAttributes{Verb: "list", Resource: "gateways", Group: "gateway.networking.k8s.io"}, false},
		{authzv1.ResourceAttributes{Verb: "list", Resource: "gateways", Group: "gateway.networking.k8s.io", Namespace: unlistedNS}, false},
		{authzv1.ResourceAttributes{Verb: "patch", Resource: "gateways", Subresource: "status", Group: "gateway.networking.k8s.io", Namespace: scopedNS}, true},
		{authzv1.ResourceAttributes{Verb: "create", Resource: "deployments", Group: "apps", Namespace: unlistedNS}, false},
		{authzv1.ResourceAttributes{Verb: "create", Resource: "deployments", Group: "apps", Namespace: scopedNS}, true},
		{authzv1.ResourceAttributes{Verb: "list", Resource: "gatewayclasses", Group: "gateway.networking.k8s.io"}, true},
		{authzv1.ResourceAttributes{Verb: "list", Resource: "namespaces"}, true},
	} {
		if got := allowed(t, sa, c.a); got != c.want {
			t.Errorf("%s %s/%s in %q: allowed=%v, want %v", c.a.Verb, c.a.Resource, c.a.Subresource, c.a.Namespace, got, c.want)
		}
	}

	var pod corev1.Pod
	eventually(t, "the namespaced controller ready", 2*timeout, func() (bool, string) {
		l, err := kc.CoreV1().Pods(scopedSysNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + scopedRelease})
		if err != nil || len(l.Items) != 1 {
			return false, fmt.Sprint(err, len(l.Items))
		}
		pod = l.Items[0]
		return ready(&pod), string(pod.Status.Phase)
	})
	args := strings.Join(pod.Spec.Containers[0].Args, " ")
	for _, a := range []string{"--watch-namespaces=" + scopedNS, "--secret-namespaces=" + scopedNS, "--controller-name=portcullis.dev/scoped"} {
		if !strings.Contains(args, a) {
			t.Errorf("controller args %q lack %s", args, a)
		}
	}

	// Served in the watched namespace, the TLS listener's Secret included.
	applyYAML(t, []byte(strings.ReplaceAll(backend, "namespace: e2e}", "namespace: "+scopedNS+"}")))
	applyYAML(t, []byte(tlsSecretYAML(t, scopedNS, "tls", "scoped.example.com")))
	applyYAML(t, []byte(scopedGatewayYAML(scopedNS)))
	applyYAML(t, []byte(strings.ReplaceAll(routeYAML("/"), "namespace: e2e}", "namespace: "+scopedNS+"}")))
	// The same Gateway where the controller does not look (and a Secret it may not read).
	applyYAML(t, []byte(tlsSecretYAML(t, unlistedNS, "tls", "scoped.example.com")))
	applyYAML(t, []byte(scopedGatewayYAML(unlistedNS)))

	var addr string
	eventually(t, "the watched namespace's Gateway Programmed, its HTTPS listener's refs resolved", 2*timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, scopedNS, "gw")
		c := condition(gw.Object, []string{"status", "conditions"}, "Programmed")
		addrs, _, _ := unstructured.NestedSlice(gw.Object, "status", "addresses")
		listeners, _, _ := unstructured.NestedSlice(gw.Object, "status", "listeners")
		resolved := false
		for _, l := range listeners {
			lm, _ := l.(map[string]any)
			if lm["name"] == "https" {
				r := condition(lm, []string{"conditions"}, "ResolvedRefs")
				resolved = r != nil && r["status"] == "True"
			}
		}
		if c == nil || c["status"] != "True" || len(addrs) == 0 || !resolved {
			return false, js(gw.Object["status"])
		}
		addr = addrs[0].(map[string]any)["value"].(string)
		return true, ""
	})
	eventually(t, "a 200 through the namespaced controller's proxy", timeout, func() (bool, string) {
		code, body, err := get("http://" + addr + "/hello")
		if err != nil {
			return false, err.Error()
		}
		return code == 200 && strings.Contains(body, scopedNS), fmt.Sprint(code, body)
	})
	gc := getObj(t, classGVR, "", scopedClass)
	if c := condition(gc.Object, []string{"status", "conditions"}, "Accepted"); c == nil || c["status"] != "True" {
		t.Errorf("GatewayClass %s: %s", scopedClass, js(c))
	}

	// The unlisted namespace's Gateway: no status from us, nothing provisioned.
	time.Sleep(2 * time.Second)
	gw := getObj(t, gwGVR, unlistedNS, "gw")
	if c := condition(gw.Object, []string{"status", "conditions"}, "Accepted"); c != nil && c["reason"] != "Pending" {
		t.Errorf("the unwatched Gateway's status was written: %s", js(gw.Object["status"]))
	}
	if l, _, _ := unstructured.NestedSlice(gw.Object, "status", "listeners"); len(l) != 0 {
		t.Errorf("the unwatched Gateway has listener statuses: %s", js(l))
	}
	if _, err := kc.AppsV1().Deployments(unlistedNS).Get(ctx, "gw-"+scopedClass, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a proxy was provisioned in the unwatched namespace: %v", err)
	}

	// Ready, and never refused anything by the API server.
	if code, body, err := get("http://" + pod.Status.PodIP + ":9901/readyz"); err != nil || code != 200 {
		t.Errorf("/readyz: %d %v %s", code, err, body)
	}
	if log := strings.ToLower(podLog(&pod)); state != "" && strings.Contains(log, "forbidden") {
		t.Errorf("the namespaced controller was refused something:\n%s", log)
	}
}
