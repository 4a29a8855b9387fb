package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func paramsYAML(name, data string) []byte {
	return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: e2e}\ndata: {" + data + "}\n")
}

// gatewayWith applies Gateway gw with a parametersRef and more listeners.
func gatewayWith(t *testing.T, params, listeners string) {
	t.Helper()
	y := strings.Replace(gatewayYAML(listeners), "\n  listeners:", "\n  infrastructure: {parametersRef: {group: \"\", kind: ConfigMap, name: "+params+"}}\n  listeners:", 1)
	applyYAML(t, []byte(y))
}

func programmed(t *testing.T, status, reason string) {
	t.Helper()
	eventually(t, "Gateway gw Programmed="+status+"/"+reason, timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, appNS, "gw")
		c := condition(gw.Object, []string{"status", "conditions"}, "Programmed")
		return c != nil && c["status"] == status && c["reason"] == reason, js(c)
	})
}

// Programmed follows the proxies (issue 16 item 4): True once a ready
// replica serves the current generation, False/Pending with no replica, and a
// port the proxy cannot bind comes back as the listener's PortUnavailable.
func Test15ProgrammedFollowsTheProxies(t *testing.T) {
	applyYAML(t, paramsYAML("params15", `replicas: "1"`))
	gatewayWith(t, "params15", "")
	programmed(t, "True", "Programmed")
	serving(t, gatewayAddress(t))

	// Something on the node holds a port (the wildcard address, so the pod's
	// own address cannot be bound either): a listener on it cannot be bound.
	clash, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer clash.Close()
	port := clash.Addr().(*net.TCPAddr).Port
	gatewayWith(t, "params15", fmt.Sprintf("\n    - {name: clash, port: %d, protocol: HTTP}", port))
	eventually(t, "listener clash Accepted=False/PortUnavailable", timeout, func() (bool, string) {
		gw := getObj(t, gwGVR, appNS, "gw")
		ls, _ := gw.Object["status"].(map[string]any)["listeners"].([]any)
		for _, l := range ls {
			l := l.(map[string]any)
			if l["name"] != "clash" {
				continue
			}
			c := condition(l, []string{"conditions"}, "Accepted")
			return c != nil && c["status"] == "False" && c["reason"] == "PortUnavailable" && strings.Contains(fmt.Sprint(c["message"]), "in use"), js(l)
		}
		return false, js(gw.Object["status"])
	})
	gatewayWith(t, "params15", "")

	// No replica: Pending, and back.
	applyYAML(t, paramsYAML("params15", `replicas: "0"`))
	programmed(t, "False", "Pending")
	applyYAML(t, paramsYAML("params15", `replicas: "1"`))
	programmed(t, "True", "Programmed")
}

// readyProxies lists the ready endpoint addresses of the proxy Service, as
// kube-proxy or a cloud load balancer would follow them.
func readyProxies(ctx context.Context) ([]string, error) {
	slices, err := kc.DiscoveryV1().EndpointSlices(appNS).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=gw-portcullis"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// A rolling restart of the proxy Deployment under constant load loses no
// request (issue 16 item 5): each retiring proxy turns unready at SIGTERM,
// keeps accepting for shutdownDelay while its endpoint is removed, then
// drains. The clients follow the EndpointSlices every 50 ms; half open a new
// connection per request, half keep connections alive.
func Test16RollingRestartLosesNoRequest(t *testing.T) {
	ctx := context.Background()
	applyYAML(t, paramsYAML("params16", `replicas: "2", shutdownDelay: "3", drainTimeout: "4"`))
	gatewayWith(t, "params16", "")
	eventually(t, "two ready proxies", timeout, func() (bool, string) {
		eps, err := readyProxies(ctx)
		return err == nil && len(eps) == 2, fmt.Sprint(eps, err)
	})
	programmed(t, "True", "Programmed")
	before, _ := readyProxies(ctx)

	var endpoints atomic.Pointer[[]string]
	endpoints.Store(&before)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if eps, err := readyProxies(ctx); err == nil && len(eps) > 0 {
				endpoints.Store(&eps)
			}
		}
	}()
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	served := map[string]bool{}
	for w := 0; w < 4; w++ {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: w%2 == 0, MaxIdleConnsPerHost: 4}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				eps := *endpoints.Load()
				ep := eps[rand.IntN(len(eps))]
				resp, err := client.Get("http://" + ep + "/hello")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if len(failures) < 10 {
						failures = append(failures, ep+": "+err.Error())
					}
				} else {
					ok.Add(1)
					served[ep] = true
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	// What `kubectl rollout restart` does.
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	d, err := kc.AppsV1().Deployments(appNS).Patch(ctx, "gw-portcullis", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-rollout"})
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	eventually(t, "the rollout done: two new ready proxies, the old ones gone", 2*timeout, func() (bool, string) {
		cur, err := kc.AppsV1().Deployments(appNS).Get(ctx, "gw-portcullis", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		eps, _ := readyProxies(ctx)
		fresh := len(eps) == 2
		for _, e := range eps {
			for _, b := range before {
				fresh = fresh && e != b
			}
		}
		s := cur.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 2 && s.ReadyReplicas == 2 && s.Replicas == 2 && fresh,
			fmt.Sprintf("%+v %v", s, eps)
	})
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	after, _ := readyProxies(ctx)
	t.Logf("rolling restart: %d requests served, %d failed; proxies %v then %v", ok.Load(), failed.Load(), before, after)
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the rolling restart: %v", failed.Load(), failures)
	}
	if ok.Load() < 200 {
		t.Errorf("only %d requests served", ok.Load())
	}
	for _, ep := range append(before, after...) {
		if !served[ep] {
			t.Errorf("no request was served by %s (old %v, new %v)", ep, before, after)
		}
	}
}
