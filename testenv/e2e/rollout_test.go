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
	// A ClusterIP Service always has an address, so Programmed can only
	// wait for the proxies (the node agent's load balancer drops the
	// address of a Service without ready pods: AddressNotAssigned first).
	ctx := context.Background()
	applyYAML(t, paramsYAML("params15", `replicas: "1", serviceType: ClusterIP`))
	gatewayWith(t, "params15", "")
	programmed(t, "True", "Programmed")
	eventually(t, "a ready proxy", timeout, func() (bool, string) {
		eps, err := readyProxies(ctx)
		return err == nil && len(eps) == 1, fmt.Sprint(eps, err)
	})
	eps, _ := readyProxies(ctx)
	serving(t, eps[0])

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
	applyYAML(t, paramsYAML("params15", `replicas: "0", serviceType: ClusterIP`))
	programmed(t, "False", "Pending")
	applyYAML(t, paramsYAML("params15", `replicas: "1", serviceType: ClusterIP`))
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

// load is a bounded constant load on the proxy Service's ready endpoints,
// followed every 50 ms from the EndpointSlices: four clients, half opening a
// new connection per request, half keeping connections alive.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	failures []string
	served   map[string]bool
}

func startLoad(ctx context.Context, initial []string) *load {
	l := &load{stop: make(chan struct{}), served: map[string]bool{}}
	var endpoints atomic.Pointer[[]string]
	endpoints.Store(&initial)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if eps, err := readyProxies(ctx); err == nil && len(eps) > 0 {
				endpoints.Store(&eps)
			}
		}
	}()
	for w := 0; w < 4; w++ {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: w%2 == 0, MaxIdleConnsPerHost: 4}}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; n < 20000; n++ {
				select {
				case <-l.stop:
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
				l.mu.Lock()
				if err != nil {
					l.fail.Add(1)
					if len(l.failures) < 10 {
						l.failures = append(l.failures, ep+": "+err.Error())
					}
				} else {
					l.ok.Add(1)
					l.served[ep] = true
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

// finish stops the load and fails the test on any failed request or too few served.
func (l *load) finish(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d requests served, %d failed", what, l.ok.Load(), l.fail.Load())
	if l.fail.Load() != 0 {
		t.Errorf("%d requests failed during %s: %v", l.fail.Load(), what, l.failures)
	}
	if l.ok.Load() < 200 {
		t.Errorf("only %d requests served during %s", l.ok.Load(), what)
	}
}

// A rolling restart of the proxy Deployment under constant load loses no
// request (issue 16 item 5): each retiring proxy turns unready at SIGTERM,
// keeps accepting for shutdownDelay while its endpoint is removed, then
// drains. (With shutdownDelay "0" this test fails: connections refused.)
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
	l := startLoad(ctx, before)
	time.Sleep(2 * time.Second)
	// What `kubectl rollout restart` does.
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	d, err := kc.AppsV1().Deployments(appNS).Patch(ctx, "gw-portcullis", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-rollout"})
	if err != nil {
		l.finish(t, "the rolling restart")
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
	l.finish(t, "the rolling restart")
	after, _ := readyProxies(ctx)
	t.Logf("proxies %v, then %v", before, after)
	for _, ep := range append(before, after...) {
		if !l.served[ep] {
			t.Errorf("no request was served by %s (old %v, new %v)", ep, before, after)
		}
	}
}

// awayRule redirects /while-away: a change made while no controller runs.
const awayRule = `
    - matches: [{path: {type: PathPrefix, value: /while-away}}]
      filters: [{type: RequestRedirect, requestRedirect: {statusCode: 302, hostname: away.example}}]`

// With every controller replica gone, the proxies keep serving their last
// configuration and stay ready; the controllers' restart under load fails no
// request, and a change made meanwhile arrives once they are back.
func Test17ControllerRestartUnderLoad(t *testing.T) {
	ctx := context.Background()
	eps, err := readyProxies(ctx)
	if err != nil || len(eps) == 0 {
		t.Fatalf("ready proxies: %v %v", eps, err)
	}
	l := startLoad(ctx, eps)
	time.Sleep(1 * time.Second)
	scale := func(n int) {
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if _, err := kc.AppsV1().Deployments(sysNS).Patch(ctx, "portcullis-controller", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scale(0)
	eventually(t, "no controller pod left", timeout, func() (bool, string) {
		pods, err := kc.CoreV1().Pods(sysNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=portcullis-controller"})
		return err == nil && len(pods.Items) == 0, fmt.Sprint(len(pods.Items), err)
	})
	// No controller: a route change is not served yet, the proxies keep serving and stay ready.
	applyYAML(t, []byte(strings.Replace(routeYAML("/"), "rules:", "rules:"+awayRule, 1)))
	time.Sleep(3 * time.Second)
	if now, _ := readyProxies(ctx); len(now) != len(eps) {
		t.Errorf("proxies turned unready without a controller: %v, then %v", eps, now)
	}
	if code, _, _ := get("http://" + eps[0] + "/while-away"); code == 302 {
		t.Errorf("a change arrived with no controller running")
	}
	scale(2)
	waitControllersReady(t, 2)
	eventually(t, "the change made meanwhile served", timeout, func() (bool, string) {
		c := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get("http://" + eps[0] + "/while-away")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 302, fmt.Sprint(resp.StatusCode)
	})
	// And a restart of running controllers (both pods deleted at once).
	restartControllers(t)
	time.Sleep(1 * time.Second)
	l.finish(t, "the controllers' absence and restart")
	applyYAML(t, []byte(routeYAML("/")))
}
