package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The config stream runs over TLS: the controller created its CA Secret, the
// proxy's ConfigMap carries that CA, and the proxy is told an https:// URL
// (and serves, so the handshake and the TokenReview worked).
func Test10StreamTLS(t *testing.T) {
	applyYAML(t, []byte(gatewayYAML("")))
	applyYAML(t, []byte(routeYAML("/")))
	addr := gatewayAddress(t)
	serving(t, addr)
	ctx := context.Background()
	sec, err := kc.CoreV1().Secrets(sysNS).Get(ctx, "portcullis-stream-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kc.CoreV1().ConfigMaps(appNS).Get(ctx, "gw-portcullis-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ca := string(sec.Data["ca.crt"]); ca == "" || cm.Data["ca.crt"] != ca {
		t.Errorf("the proxy's CA bundle is not the controller's CA:\n%q\n%q", cm.Data["ca.crt"], ca)
	}
	d, err := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--controller https://portcullis-controller.portcullis-system.svc:9977") {
		t.Errorf("proxy args: %s", args)
	}
}

func serving(t *testing.T, addr string) {
	t.Helper()
	eventually(t, "a 200 through the Gateway", timeout, func() (bool, string) {
		code, _, err := get("http://" + addr + "/hello")
		if err != nil {
			return false, err.Error()
		}
		return code == 200, fmt.Sprint(code)
	})
}

// What the controller provisioned is restored when deleted or edited.
func Test11DriftRepaired(t *testing.T) {
	ctx := context.Background()
	svc, err := kc.CoreV1().Services(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.CoreV1().Services(appNS).Delete(ctx, "gw-portcullis", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted Service recreated", timeout, func() (bool, string) {
		s, err := kc.CoreV1().Services(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return s.UID != svc.UID, "same UID"
	})
	sa, err := kc.CoreV1().ServiceAccounts(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.CoreV1().ServiceAccounts(appNS).Delete(ctx, "gw-portcullis", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted ServiceAccount recreated", timeout, func() (bool, string) {
		s, err := kc.CoreV1().ServiceAccounts(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return s.UID != sa.UID, "same UID"
	})
	// An edit of the Deployment (someone scales it to 3) is undone.
	patch := []byte(`{"spec":{"replicas":3}}`)
	if _, err := kc.AppsV1().Deployments(appNS).Patch(ctx, "gw-portcullis", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Deployment back at 1 replica", timeout, func() (bool, string) {
		d, err := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Spec.Replicas != nil && *d.Spec.Replicas == 1, fmt.Sprint(*d.Spec.Replicas)
	})
	// A deleted Deployment comes back and serves again.
	if err := kc.AppsV1().Deployments(appNS).Delete(ctx, "gw-portcullis", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted Deployment recreated", timeout, func() (bool, string) {
		_, err := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	serving(t, gatewayAddress(t))
}

func setParams(t *testing.T, ref string) {
	t.Helper()
	extra := ""
	if ref != "" {
		extra = "\n  infrastructure: {parametersRef: {group: \"\", kind: ConfigMap, name: " + ref + "}}"
	}
	applyYAML(t, []byte(strings.Replace(gatewayYAML(""), "\n  listeners:", extra+"\n  listeners:", 1)))
}

// A Gateway that stops being accepted (a typo in its parametersRef) keeps its
// proxy serving the last accepted config, and its status says why. Then an
// HPA-style switch: replicas are not owned, so a scale is not undone.
func Test12NotAcceptedKeepsServingAndAutoscaledReplicas(t *testing.T) {
	ctx := context.Background()
	addr := gatewayAddress(t)
	setParams(t, "typo")
	eventually(t, "Accepted=False/InvalidParameters", timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, appNS, "gw")
		c := condition(gw.Object, []string{"status", "conditions"}, "Accepted")
		return c != nil && c["status"] == "False" && c["reason"] == "InvalidParameters", js(c)
	})
	for i := 0; i < 10; i++ {
		code, _, err := get("http://" + addr + "/hello")
		if err != nil || code != 200 {
			t.Fatalf("the proxy stopped serving: %d %v", code, err)
		}
		time.Sleep(300 * time.Millisecond)
	}

	applyYAML(t, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: params, namespace: e2e}\ndata: {autoscaled: \"true\"}\n"))
	setParams(t, "params")
	eventually(t, "Accepted=True again", timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, appNS, "gw")
		c := condition(gw.Object, []string{"status", "conditions"}, "Accepted")
		return c != nil && c["status"] == "True", js(c)
	})
	eventually(t, "replicas not owned by portcullis", timeout, func() (bool, string) {
		d, err := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range d.ManagedFields {
			if m.Manager == "portcullis" && m.FieldsV1 != nil && strings.Contains(string(m.FieldsV1.Raw), `"f:replicas"`) {
				return false, string(m.FieldsV1.Raw)
			}
		}
		return true, ""
	})
	patch := []byte(`{"spec":{"replicas":2}}`)
	if _, err := kc.AppsV1().Deployments(appNS).Patch(ctx, "gw-portcullis", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "hpa-stand-in"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	d, err := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("the autoscaler's replicas were overridden: %d", *d.Spec.Replicas)
	}
	if err := kc.CoreV1().ConfigMaps(appNS).Delete(ctx, "params", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}
