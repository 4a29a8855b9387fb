package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// Agent is the node.
type Agent struct {
	client           kubernetes.Interface
	node             string
	state            string
	images           ImageMap
	preload          string
	apiHost, apiPort string
	caPEM            []byte
	ips              *IPAllocator

	mu       sync.Mutex
	pods     map[string]*runningPod // by UID
	pending  map[string]bool        // UIDs reported Pending (unmapped image)
	hosts    string
	podLst   listersv1.PodLister
	svcLst   listersv1.ServiceLister
	kick     chan struct{}
	pidsFile string
	// Port of the kubelet endpoint (container logs), advertised in the Node status.
	kubeletPort int32
}

type runningPod struct {
	uid, key, ip, dir string
	cancel            context.CancelFunc
	procs             []*proc
	stopping          bool
	done              chan struct{}
}

type proc struct {
	name     string
	mu       sync.Mutex
	cmd      *exec.Cmd
	ready    bool
	running  bool
	restarts int32
	started  time.Time
}

func (a *Agent) Run(ctx context.Context) error {
	a.pending = map[string]bool{}
	a.kick = make(chan struct{}, 1)
	if err := os.MkdirAll(filepath.Join(a.state, "pods"), 0o755); err != nil {
		return err
	}
	a.pidsFile = filepath.Join(a.state, "pids")
	hostsPath := filepath.Join(a.state, "hosts")
	if err := os.WriteFile(hostsPath, []byte(HostsFile(nil)), 0o644); err != nil {
		return err
	}
	if err := a.registerNode(ctx); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	f := informers.NewSharedInformerFactory(a.client, 0)
	podInf := f.Core().V1().Pods()
	svcInf := f.Core().V1().Services()
	a.podLst, a.svcLst = podInf.Lister(), svcInf.Lister()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(any, any) { a.poke() },
		DeleteFunc: func(any) { a.poke() },
	}
	if _, err := podInf.Informer().AddEventHandler(h); err != nil {
		return err
	}
	if _, err := svcInf.Informer().AddEventHandler(h); err != nil {
		return err
	}
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	klog.Infof("node %s ready; images: %v", a.node, a.images)
	heartbeat := time.NewTicker(20 * time.Second)
	tick := time.NewTicker(time.Second)
	for {
		select {
		case <-ctx.Done():
			a.shutdown()
			return nil
		case <-heartbeat.C:
			a.heartbeat(ctx)
		case <-tick.C:
		case <-a.kick:
		}
		a.reconcile(ctx)
	}
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) registerNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.node, Labels: map[string]string{
			"kubernetes.io/hostname": a.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		}},
	}
	_, err := a.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return a.heartbeat(ctx)
}

func (a *Agent) heartbeat(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.client.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("64"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   resource.MustParse("500"),
		}
		n.Status.Capacity, n.Status.Allocatable = capacity, capacity
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = a.kubeletPort
		n.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "portcullis testenv node agent", LastHeartbeatTime: now, LastTransitionTime: now,
		}}
		n.Status.NodeInfo.KubeletVersion = "testenv"
		n.Status.NodeInfo.OperatingSystem, n.Status.NodeInfo.Architecture = "linux", "amd64"
		_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// reconcile brings local processes, pod bindings, the hosts file and
// LoadBalancer statuses in line with the API.
func (a *Agent) reconcile(ctx context.Context) {
	pods, err := a.podLst.List(labels.Everything())
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, p := range pods {
		if p.Spec.NodeName == "" {
			if p.DeletionTimestamp == nil && (p.Spec.SchedulerName == "" || p.Spec.SchedulerName == corev1.DefaultSchedulerName) {
				a.bind(ctx, p)
			}
			continue
		}
		if p.Spec.NodeName != a.node {
			continue
		}
		uid := string(p.UID)
		seen[uid] = true
		a.mu.Lock()
		rp := a.pods[uid]
		pend := a.pending[uid]
		a.mu.Unlock()
		switch {
		case p.DeletionTimestamp != nil:
			if rp != nil && !rp.stopping {
				rp.stopping = true
				go a.stopAndDelete(ctx, p, rp)
			} else if rp == nil {
				a.forget(uid)
				go a.deletePod(ctx, p)
			}
		case rp == nil && !pend && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed:
			a.start(ctx, p)
		}
	}
	a.mu.Lock()
	var gone []*runningPod
	for uid, rp := range a.pods {
		if !seen[uid] && !rp.stopping {
			rp.stopping = true
			gone = append(gone, rp)
		}
	}
	for uid := range a.pending {
		if !seen[uid] {
			delete(a.pending, uid)
		}
	}
	a.mu.Unlock()
	for _, rp := range gone {
		go func() { a.stop(rp, 10*time.Second); a.forget(rp.uid) }()
	}
	a.syncServices(ctx, pods)
}

func (a *Agent) forget(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rp := a.pods[uid]; rp != nil {
		a.ips.Release(rp.ip)
	}
	delete(a.pods, uid)
	delete(a.pending, uid)
	a.writePids()
}

func (a *Agent) bind(ctx context.Context, p *corev1.Pod) {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.node},
	}
	if err := a.client.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsConflict(err) {
		klog.Warningf("bind %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func (a *Agent) event(ctx context.Context, p *corev1.Pod, typ, reason, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: p.Name + ".", Namespace: p.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Type:           typ, Reason: reason, Message: msg,
		Source:         corev1.EventSource{Component: "testenv-node-agent", Host: a.node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "portcullis.dev/testenv-node-agent", ReportingInstance: a.node,
	}
	if _, err := a.client.CoreV1().Events(p.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		klog.Warningf("event on %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// start runs a pod's containers, or leaves it Pending with an event when an image is not mapped.
func (a *Agent) start(ctx context.Context, p *corev1.Pod) {
	key := p.Namespace + "/" + p.Name
	var unmapped []string
	for _, c := range p.Spec.Containers {
		if _, ok := a.images.Binary(c.Image); !ok {
			unmapped = append(unmapped, c.Image)
		}
	}
	if len(p.Spec.InitContainers) > 0 {
		unmapped = append(unmapped, "(init containers are not supported)")
	}
	if len(unmapped) > 0 {
		a.mu.Lock()
		a.pending[string(p.UID)] = true
		a.mu.Unlock()
		msg := fmt.Sprintf("no local binary for image %s (the testenv node runs pods as processes from an image → binary map)", strings.Join(unmapped, ", "))
		klog.Warningf("pod %s stays Pending: %s", key, msg)
		a.event(ctx, p, corev1.EventTypeWarning, "ImageNotMapped", msg)
		a.updateStatus(ctx, p, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			setCondition(s, corev1.PodScheduled, true, "")
			var cs []corev1.ContainerStatus
			for _, c := range p.Spec.Containers {
				cs = append(cs, corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImageNotMapped", Message: msg}}})
			}
			s.ContainerStatuses = cs
		})
		return
	}
	ip, err := a.ips.Alloc()
	if err != nil {
		klog.Errorf("pod %s: %v", key, err)
		return
	}
	dir := filepath.Join(a.state, "pods", p.Namespace+"_"+p.Name+"_"+string(p.UID)[:8])
	pctx, cancel := context.WithCancel(ctx)
	rp := &runningPod{uid: string(p.UID), key: key, ip: ip, dir: dir, cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	a.pods[rp.uid] = rp
	a.mu.Unlock()
	vols, err := a.volumes(ctx, p, dir, ip)
	if err != nil {
		klog.Warningf("pod %s volumes: %v", key, err)
		a.event(ctx, p, corev1.EventTypeWarning, "FailedMount", err.Error())
		cancel()
		a.forget(rp.uid)
		return
	}
	klog.Infof("pod %s: starting at %s", key, ip)
	now := metav1.Now()
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		pr := &proc{name: c.Name}
		rp.procs = append(rp.procs, pr)
		go a.supervise(pctx, p, rp, c, pr, vols)
	}
	a.updateStatus(ctx, p, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.PodIP, s.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		s.HostIP, s.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
		s.StartTime = &now
		setCondition(s, corev1.PodScheduled, true, "")
		setCondition(s, corev1.PodInitialized, true, "")
	})
	go a.probeLoop(pctx, p, rp)
}

// volumes materialises the pod's volumes; returns (source, mountPath) per container.
func (a *Agent) volumes(ctx context.Context, p *corev1.Pod, dir, ip string) (map[string][][2]string, error) {
	vdir := filepath.Join(dir, "volumes")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, v := range p.Spec.Volumes {
		d := filepath.Join(vdir, v.Name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		paths[v.Name] = d
		var err error
		switch {
		case v.EmptyDir != nil:
		case v.Secret != nil:
			err = a.writeSecret(ctx, p.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, d)
		case v.ConfigMap != nil:
			err = a.writeConfigMap(ctx, p.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, d)
		case v.DownwardAPI != nil:
			err = a.writeDownward(p, v.DownwardAPI.Items, ip, d)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				switch {
				case s.ServiceAccountToken != nil:
					err = a.writeToken(ctx, p, s.ServiceAccountToken, d)
				case s.ConfigMap != nil:
					err = a.writeConfigMap(ctx, p.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, d)
				case s.Secret != nil:
					err = a.writeSecret(ctx, p.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, d)
				case s.DownwardAPI != nil:
					err = a.writeDownward(p, s.DownwardAPI.Items, ip, d)
				}
				if err != nil {
					break
				}
			}
		default:
			klog.Warningf("pod %s/%s: volume %s: unsupported type, left empty", p.Namespace, p.Name, v.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	out := map[string][][2]string{}
	for _, c := range p.Spec.Containers {
		var ms [][2]string
		for _, m := range c.VolumeMounts {
			src, ok := paths[m.Name]
			if !ok {
				return nil, fmt.Errorf("container %s mounts unknown volume %s", c.Name, m.Name)
			}
			if m.SubPath != "" {
				src = filepath.Join(src, m.SubPath)
			}
			ms = append(ms, [2]string{src, m.MountPath})
		}
		ms = append(ms, [2]string{filepath.Join(a.state, "hosts"), "/etc/hosts"})
		out[c.Name] = ms
	}
	return out, nil
}

func writeItems(d string, data map[string][]byte, items []corev1.KeyToPath) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := os.WriteFile(filepath.Join(d, k), v, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %s not found", it.Key)
		}
		f := filepath.Join(d, it.Path)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, v, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) writeSecret(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, d string) error {
	s, err := a.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil
	}
	if err != nil {
		return err
	}
	return writeItems(d, s.Data, items)
}

func (a *Agent) writeConfigMap(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, d string) error {
	cm, err := a.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	data := map[string][]byte{}
	switch {
	case apierrors.IsNotFound(err) && name == "kube-root-ca.crt" && len(a.caPEM) > 0:
		data["ca.crt"] = a.caPEM // the publisher controller has not run yet
	case apierrors.IsNotFound(err) && optional != nil && *optional:
		return nil
	case err != nil:
		return err
	default:
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			data[k] = v
		}
	}
	return writeItems(d, data, items)
}

func (a *Agent) writeDownward(p *corev1.Pod, items []corev1.DownwardAPIVolumeFile, ip, d string) error {
	for _, it := range items {
		if it.FieldRef == nil {
			continue
		}
		v, _ := FieldRef(p, it.FieldRef.FieldPath, ip)
		if err := os.WriteFile(filepath.Join(d, it.Path), []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeToken asks the TokenRequest API for a token bound to the pod and keeps it fresh.
func (a *Agent) writeToken(ctx context.Context, p *corev1.Pod, src *corev1.ServiceAccountTokenProjection, d string) error {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	var aud []string
	if src.Audience != "" {
		aud = []string{src.Audience}
	}
	get := func() error {
		tr, err := a.client.CoreV1().ServiceAccounts(p.Namespace).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
			Audiences: aud, ExpirationSeconds: &exp,
			BoundObjectRef: &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		f := filepath.Join(d, src.Path)
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, f)
	}
	if err := get(); err != nil {
		return fmt.Errorf("TokenRequest for %s/%s: %w", p.Namespace, sa, err)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(exp) * time.Second * 8 / 10):
				if err := get(); err != nil {
					klog.Warningf("token refresh %s/%s: %v", p.Namespace, p.Name, err)
				}
			}
		}
	}()
	return nil
}

// env is the container's environment: what the spec asks for plus what a kubelet adds.
func (a *Agent) env(ctx context.Context, p *corev1.Pod, c *corev1.Container, ip string, dir string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + dir,
		"HOSTNAME=" + p.Name,
		"KUBERNETES_SERVICE_HOST=" + a.apiHost,
		"KUBERNETES_SERVICE_PORT=" + a.apiPort,
		"KUBERNETES_SERVICE_PORT_HTTPS=" + a.apiPort,
		"TESTENV_POD_IP=" + ip,
	}
	for _, e := range c.Env {
		v := e.Value
		if s := e.ValueFrom; s != nil {
			switch {
			case s.FieldRef != nil:
				v, _ = FieldRef(p, s.FieldRef.FieldPath, ip)
			case s.SecretKeyRef != nil:
				if sec, err := a.client.CoreV1().Secrets(p.Namespace).Get(ctx, s.SecretKeyRef.Name, metav1.GetOptions{}); err == nil {
					v = string(sec.Data[s.SecretKeyRef.Key])
				}
			case s.ConfigMapKeyRef != nil:
				if cm, err := a.client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, s.ConfigMapKeyRef.Name, metav1.GetOptions{}); err == nil {
					v = cm.Data[s.ConfigMapKeyRef.Key]
				}
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// supervise runs one container, restarting it (with backoff) until the pod stops.
func (a *Agent) supervise(ctx context.Context, p *corev1.Pod, rp *runningPod, c *corev1.Container, pr *proc, mounts map[string][][2]string) {
	bin, _ := a.images.Binary(c.Image)
	args := append([]string{}, c.Args...)
	if len(c.Command) > 1 {
		args = append(append([]string{}, c.Command[1:]...), args...)
	}
	backoff := time.Second
	for ctx.Err() == nil {
		logf, err := os.OpenFile(filepath.Join(rp.dir, c.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			klog.Errorf("pod %s: %v", rp.key, err)
			return
		}
		argv := append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", MountScript(mounts[c.Name]), c.Name, bin, a.preload}, args...)
		cmd := exec.Command("unshare", argv...)
		cmd.Env = a.env(ctx, p, c, rp.ip, rp.dir)
		cmd.Dir = rp.dir
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		started := time.Now()
		if err := cmd.Start(); err != nil {
			klog.Errorf("pod %s container %s: %v", rp.key, c.Name, err)
			logf.Close()
			return
		}
		pr.mu.Lock()
		pr.cmd, pr.running, pr.started = cmd, true, started
		pr.mu.Unlock()
		a.mu.Lock()
		a.writePids()
		a.mu.Unlock()
		klog.Infof("pod %s container %s: pid %d: %s %s", rp.key, c.Name, cmd.Process.Pid, bin, strings.Join(args, " "))
		err = cmd.Wait()
		logf.Close()
		pr.mu.Lock()
		pr.running, pr.ready = false, false
		pr.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		klog.Warningf("pod %s container %s exited: %v", rp.key, c.Name, err)
		pr.mu.Lock()
		pr.restarts++
		pr.mu.Unlock()
		a.poke()
		if time.Since(started) > 30*time.Second {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// probeLoop runs readiness probes and reports the pod's Ready condition.
func (a *Agent) probeLoop(ctx context.Context, p *corev1.Pod, rp *runningPod) {
	lastReady, first := false, true
	httpc := &http.Client{Timeout: time.Second}
	for {
		allReady := true
		var statuses []corev1.ContainerStatus
		for i := range p.Spec.Containers {
			c := &p.Spec.Containers[i]
			pr := rp.procs[i]
			pr.mu.Lock()
			running, started, restarts := pr.running, pr.started, pr.restarts
			pr.mu.Unlock()
			ready := running
			if pb := c.ReadinessProbe; running && pb != nil {
				ready = time.Since(started) >= time.Duration(pb.InitialDelaySeconds)*time.Second && probe(httpc, c, pb, rp.ip)
			}
			pr.mu.Lock()
			pr.ready = ready
			pr.mu.Unlock()
			allReady = allReady && ready
			st := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "testenv://" + c.Image, ContainerID: fmt.Sprintf("testenv://%s/%s", rp.uid, c.Name), Ready: ready, RestartCount: restarts, Started: &running}
			if running {
				st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}
			} else {
				st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
			}
			statuses = append(statuses, st)
		}
		if first || allReady != lastReady {
			a.updateStatus(ctx, p, func(s *corev1.PodStatus) {
				s.ContainerStatuses = statuses
				setCondition(s, corev1.ContainersReady, allReady, "ContainersNotReady")
				setCondition(s, corev1.PodReady, allReady, "ContainersNotReady")
			})
			if allReady != lastReady {
				klog.Infof("pod %s: ready=%v", rp.key, allReady)
			}
			first, lastReady = false, allReady
			a.poke()
		}
		period := time.Second
		for _, c := range p.Spec.Containers {
			if c.ReadinessProbe != nil && c.ReadinessProbe.PeriodSeconds > 0 && !allReady {
				period = min(period, time.Duration(c.ReadinessProbe.PeriodSeconds)*time.Second)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

func probe(httpc *http.Client, c *corev1.Container, pb *corev1.Probe, ip string) bool {
	switch {
	case pb.HTTPGet != nil:
		port, ok := ContainerPort(c, pb.HTTPGet.Port.String())
		if !ok {
			return false
		}
		scheme := "http"
		if pb.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		resp, err := httpc.Get(fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(ip, fmt.Sprint(port)), pb.HTTPGet.Path))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case pb.TCPSocket != nil:
		port, ok := ContainerPort(c, pb.TCPSocket.Port.String())
		if !ok {
			return false
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(port)), time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	return true // exec and gRPC probes are not run: ready when running
}

func setCondition(s *corev1.PodStatus, t corev1.PodConditionType, ok bool, reason string) {
	st := corev1.ConditionFalse
	if ok {
		st, reason = corev1.ConditionTrue, ""
	}
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			if s.Conditions[i].Status != st {
				s.Conditions[i].Status, s.Conditions[i].Reason, s.Conditions[i].LastTransitionTime = st, reason, metav1.Now()
			}
			return
		}
	}
	s.Conditions = append(s.Conditions, corev1.PodCondition{Type: t, Status: st, Reason: reason, LastTransitionTime: metav1.Now()})
}

func (a *Agent) updateStatus(ctx context.Context, p *corev1.Pod, f func(*corev1.PodStatus)) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := a.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != p.UID {
			return nil
		}
		f(&cur.Status)
		_, err = a.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		klog.Warningf("pod %s/%s status: %v", p.Namespace, p.Name, err)
	}
}

// stop terminates the pod's processes: SIGTERM to each process group, SIGKILL after grace.
func (a *Agent) stop(rp *runningPod, grace time.Duration) {
	rp.cancel()
	var cmds []*exec.Cmd
	for _, pr := range rp.procs {
		pr.mu.Lock()
		if pr.cmd != nil && pr.cmd.Process != nil && pr.running {
			cmds = append(cmds, pr.cmd)
		}
		pr.mu.Unlock()
	}
	for _, c := range cmds {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for _, pr := range rp.procs {
		for time.Now().Before(deadline) {
			pr.mu.Lock()
			r := pr.running
			pr.mu.Unlock()
			if !r {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, c := range cmds {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
	klog.Infof("pod %s: stopped", rp.key)
}

func (a *Agent) stopAndDelete(ctx context.Context, p *corev1.Pod, rp *runningPod) {
	grace := 10 * time.Second
	if g := p.DeletionGracePeriodSeconds; g != nil {
		grace = min(time.Duration(*g)*time.Second, grace)
	}
	a.stop(rp, grace)
	a.forget(rp.uid)
	a.deletePod(ctx, p)
}

func (a *Agent) deletePod(ctx context.Context, p *corev1.Pod) {
	zero := int64(0)
	uid := p.UID
	err := a.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.Warningf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// shutdown stops every pod process (the API objects stay).
func (a *Agent) shutdown() {
	a.mu.Lock()
	pods := make([]*runningPod, 0, len(a.pods))
	for _, rp := range a.pods {
		pods = append(pods, rp)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, rp := range pods {
		wg.Add(1)
		go func() { defer wg.Done(); a.stop(rp, 5*time.Second) }()
	}
	wg.Wait()
	a.mu.Lock()
	a.pods = map[string]*runningPod{}
	a.writePids()
	a.mu.Unlock()
}

// writePids records the PID of every running container process (caller holds a.mu).
func (a *Agent) writePids() {
	var b strings.Builder
	for _, rp := range a.pods {
		for _, pr := range rp.procs {
			pr.mu.Lock()
			if pr.cmd != nil && pr.cmd.Process != nil && pr.running {
				fmt.Fprintf(&b, "%d %s/%s\n", pr.cmd.Process.Pid, rp.key, pr.name)
			}
			pr.mu.Unlock()
		}
	}
	_ = os.WriteFile(a.pidsFile, []byte(b.String()), 0o644)
}

// readyIPs are the Pod IPs of this node's ready pods matching a selector, sorted.
func (a *Agent) readyIPs(pods []*corev1.Pod, ns string, sel map[string]string) []string {
	if len(sel) == 0 {
		return nil
	}
	s := labels.SelectorFromSet(sel)
	var ips []string
	for _, p := range pods {
		if p.Namespace != ns || p.DeletionTimestamp != nil || p.Spec.NodeName != a.node || p.Status.PodIP == "" || !s.Matches(labels.Set(p.Labels)) {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ips = append(ips, p.Status.PodIP)
			}
		}
	}
	sort.Strings(ips)
	return ips
}

// syncServices rewrites the pods' hosts file and the LoadBalancer statuses.
func (a *Agent) syncServices(ctx context.Context, pods []*corev1.Pod) {
	svcs, err := a.svcLst.List(labels.Everything())
	if err != nil {
		return
	}
	names := map[string]string{}
	for _, svc := range svcs {
		ips := a.readyIPs(pods, svc.Namespace, svc.Spec.Selector)
		if len(ips) > 0 {
			names[svc.Namespace+"/"+svc.Name] = ips[0]
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		cur := svc.Status.LoadBalancer.Ingress
		want := []corev1.LoadBalancerIngress{}
		if len(cur) == 1 && contains(ips, cur[0].IP) {
			continue // keep a still-valid address
		}
		if len(ips) > 0 {
			vip := corev1.LoadBalancerIPModeVIP
			want = append(want, corev1.LoadBalancerIngress{IP: ips[0], IPMode: &vip})
		}
		if len(cur) == 0 && len(want) == 0 {
			continue
		}
		s := svc.DeepCopy()
		s.Status.LoadBalancer.Ingress = want
		if _, err := a.client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			klog.Warningf("service %s/%s status: %v", s.Namespace, s.Name, err)
		} else if err == nil {
			klog.Infof("service %s/%s: load balancer ingress %v", s.Namespace, s.Name, want)
		}
	}
	hosts := HostsFile(names)
	if hosts != a.hosts {
		// Rewritten in place: the pods bind-mount this very inode.
		if f, err := os.OpenFile(filepath.Join(a.state, "hosts"), os.O_WRONLY|os.O_TRUNC, 0o644); err == nil {
			_, _ = f.WriteString(hosts)
			f.Close()
			a.hosts = hosts
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
