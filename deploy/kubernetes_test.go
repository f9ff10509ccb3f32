package deploy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const manifestDir = "kubernetes"

// scaledObject mirrors KEDA's keda.sh/v1alpha1 ScaledObject spec (KEDA's
// apis/keda/v1alpha1), so unknown or misspelt fields fail strict decoding
// without pulling KEDA's module and its scalers' dependencies.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		ScaleTargetRef *struct {
			Name                   string `json:"name"`
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		InitialCooldownPeriod int32  `json:"initialCooldownPeriod,omitempty"`
		Advanced              *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
				Name     string                                         `json:"name,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			ScalingModifiers              *struct {
				Formula          string                         `json:"formula,omitempty"`
				Target           string                         `json:"target,omitempty"`
				ActivationTarget string                         `json:"activationTarget,omitempty"`
				MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
			} `json:"scalingModifiers,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
			MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
		} `json:"triggers"`
		Fallback *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
	} `json:"spec"`
}

// redisScalerParams are the metadata KEDA's redis (lists) scaler accepts.
var redisScalerParams = []string{
	"address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
	"usernameFromEnv", "passwordFromEnv", "listName", "listLength",
	"activationListLength", "enableTLS", "unsafeSsl", "databaseIndex",
}

// kustomization mirrors the part of kustomize's Kustomization these files use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// manifests is every object under deploy/kubernetes, decoded strictly.
type manifests struct {
	deployments   map[string]*appsv1.Deployment
	services      map[string]*corev1.Service
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	pdbs          map[string]*policyv1.PodDisruptionBudget
	scaledObjects map[string]*scaledObject
	kustomize     map[string]*kustomization // by directory
	files         map[string][]string       // file -> "Kind/name" it holds
}

// newObject returns the typed value a document of this apiVersion/kind
// decodes into; an unexpected kind is an error, not a silent skip.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}, nil
	}
	return nil, fmt.Errorf("unexpected %s %s", apiVersion, kind)
}

// splitDocuments returns the non-empty YAML documents of a file.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
}

// decodeStrict decodes one document into its Kubernetes type as the API
// server's strict field validation does: field names match case-sensitively,
// and unknown or duplicate fields are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil {
		err = errors.Join(strictErrs...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, scaledObjects: map[string]*scaledObject{},
		kustomize: map[string]*kustomization{}, files: map[string][]string{},
	}
	err := filepath.WalkDir(manifestDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".yaml") {
			return fmt.Errorf("%s: every file here should be a .yaml manifest", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs, err := splitDocuments(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i, doc := range docs {
			obj, err := decodeStrict(doc)
			if err != nil {
				return fmt.Errorf("%s document %d: %w", path, i+1, err)
			}
			var name string
			switch o := obj.(type) {
			case *appsv1.Deployment:
				name, m.deployments[o.Name] = "Deployment/"+o.Name, o
			case *corev1.Service:
				name, m.services[o.Name] = "Service/"+o.Name, o
			case *corev1.ConfigMap:
				name, m.configMaps[o.Name] = "ConfigMap/"+o.Name, o
			case *corev1.Secret:
				name, m.secrets[o.Name] = "Secret/"+o.Name, o
			case *policyv1.PodDisruptionBudget:
				name, m.pdbs[o.Name] = "PodDisruptionBudget/"+o.Name, o
			case *scaledObject:
				name, m.scaledObjects[o.Name] = "ScaledObject/"+o.Name, o
			case *kustomization:
				name, m.kustomize[filepath.Dir(path)] = "Kustomization", o
			}
			m.files[path] = append(m.files[path], name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The decoder must really be strict, or the other tests prove nothing.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
	}{
		{"misspelt Deployment field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"},
		{"probe field at the wrong level", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          livenessProbe: {path: /livez}\n"},
		{"field name in the wrong case", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostnetwork: true\n"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: '1', A: '2'}\n"},
		{"unknown ScaledObject field", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: w}\n  minReplicas: 1\n  triggers: []\n"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeStrict([]byte(tc.doc)); err == nil {
				t.Fatal("decoded without error")
			}
		})
	}
}

func TestKustomizationsListEveryManifest(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	base, keda := m.kustomize[filepath.Join(manifestDir, "base")], m.kustomize[filepath.Join(manifestDir, "keda")]
	if base == nil || keda == nil {
		t.Fatalf("want kustomization.yaml in %s/base and %s/keda", manifestDir, manifestDir)
	}
	for dir, k := range m.kustomize {
		for _, res := range k.Resources {
			target := filepath.Join(dir, res)
			fi, err := os.Stat(target)
			if err != nil {
				t.Errorf("%s/kustomization.yaml: resource %s: %v", dir, res, err)
				continue
			}
			// kustomize refuses a base that contains the overlay ("cycle detected").
			if rel, err := filepath.Rel(target, dir); fi.IsDir() && err == nil && !strings.HasPrefix(rel, "..") {
				t.Errorf("%s/kustomization.yaml: resource %s contains the kustomization itself", dir, res)
			}
		}
	}
	// Every manifest is in exactly one kustomization, except the Secret
	// template, which must never be applied over the real Secret.
	listed := map[string]int{}
	for dir, k := range m.kustomize {
		for _, res := range k.Resources {
			listed[filepath.Clean(filepath.Join(dir, res))]++
		}
	}
	for file := range m.files {
		base := filepath.Base(file)
		switch {
		case base == "kustomization.yaml":
		case base == "secret.example.yaml":
			if listed[file] != 0 {
				t.Errorf("%s is in a kustomization: apply -k would overwrite the real Secret with placeholders", file)
			}
		case listed[file] != 1:
			t.Errorf("%s is in %d kustomizations, want 1", file, listed[file])
		}
	}
	if !slices.Contains(keda.Resources, "../base") {
		t.Errorf("keda/kustomization.yaml should build on ../base, has %v", keda.Resources)
	}
	// The image the Deployments name is the one kustomize rewrites.
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !slices.ContainsFunc(base.Images, func(i struct {
				Name    string `json:"name"`
				NewName string `json:"newName,omitempty"`
				NewTag  string `json:"newTag,omitempty"`
				Digest  string `json:"digest,omitempty"`
			}) bool {
				return i.Name == c.Image
			}) {
				t.Errorf("%s/%s: image %q is not in kustomization.yaml images", d.Name, c.Name, c.Image)
			}
		}
	}
}

func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, ok := strings.Cut(addr, ":")
	n, err := strconv.Atoi(p)
	if !ok || err != nil {
		t.Fatalf("listen address %q has no port", addr)
	}
	return int32(n)
}

func TestDeployments(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	cm := m.configMaps["prefect-proxy"]
	if cm == nil {
		t.Fatal("no ConfigMap prefect-proxy")
	}
	cases := []struct {
		deployment, binary, portName, listenVar string
	}{
		{"prefect-proxy-api", "/usr/local/bin/api", "http", "LISTEN_ADDR"},
		{"prefect-proxy-worker", "/usr/local/bin/worker", "ops", "WORKER_LISTEN_ADDR"},
	}
	for _, tc := range cases {
		t.Run(tc.deployment, func(t *testing.T) {
			t.Parallel()
			d := m.deployments[tc.deployment]
			if d == nil {
				t.Fatalf("no Deployment %s", tc.deployment)
			}
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("selector %v does not select the pod template %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
			}
			pod := d.Spec.Template.Spec
			psc := pod.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("pod securityContext must run as a non-root uid: %+v", psc)
			}
			if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 25 {
				t.Errorf("terminationGracePeriodSeconds must leave in-flight work time to finish (>= 25 s)")
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("want one container, have %d", len(pod.Containers))
			}
			c := pod.Containers[0]
			if !slices.Equal(c.Command, []string{tc.binary}) {
				t.Errorf("command %v, want [%s]", c.Command, tc.binary)
			}
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("container securityContext: want no privilege escalation, read-only root, all capabilities dropped: %+v", sc)
			}
			port := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == tc.portName })
			if port < 0 {
				t.Fatalf("no container port named %s", tc.portName)
			}
			if want := addrPort(t, cm.Data[tc.listenVar]); c.Ports[port].ContainerPort != want {
				t.Errorf("port %s is %d, but the ConfigMap's %s listens on %d", tc.portName, c.Ports[port].ContainerPort, tc.listenVar, want)
			}
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"liveness", c.LivenessProbe, "/livez"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("no HTTP %s probe", p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != tc.portName {
					t.Errorf("%s probe GET %s on %s, want %s on %s", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, tc.portName)
				}
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
				if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
					t.Errorf("%s: request %s, limit %s: want both, request <= limit", res, req.String(), lim.String())
				}
			}
			var fromCM, fromSecret bool
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && m.configMaps[ef.ConfigMapRef.Name] != nil {
					fromCM = true
				}
				if ef.SecretRef != nil && m.secrets[ef.SecretRef.Name] != nil &&
					(ef.SecretRef.Optional == nil || !*ef.SecretRef.Optional) {
					fromSecret = true
				}
			}
			if !fromCM || !fromSecret {
				t.Errorf("envFrom must name the ConfigMap and (not optional) the Secret of these manifests: %+v", c.EnvFrom)
			}

			// Exactly one PodDisruptionBudget covers these pods, and only them.
			var covering []string
			for name, pdb := range m.pdbs {
				s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				if err != nil {
					t.Fatal(err)
				}
				if !s.Empty() && s.Matches(labels.Set(d.Spec.Template.Labels)) {
					covering = append(covering, name)
				}
			}
			if len(covering) != 1 {
				t.Errorf("PodDisruptionBudgets covering %s: %v, want exactly one", tc.deployment, covering)
			}
		})
	}
}

func TestServiceReachesTheAPI(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	svc, api, worker := m.services["prefect-proxy"], m.deployments["prefect-proxy-api"], m.deployments["prefect-proxy-worker"]
	if svc == nil || api == nil || worker == nil {
		t.Fatal("want Service prefect-proxy and Deployments prefect-proxy-api, prefect-proxy-worker")
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	if len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(api.Spec.Template.Labels)) || sel.Matches(labels.Set(worker.Spec.Template.Labels)) {
		t.Errorf("Service selector %v must select the api pods and not the workers", svc.Spec.Selector)
	}
	for _, p := range svc.Spec.Ports {
		if !slices.ContainsFunc(api.Spec.Template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == p.TargetPort.String() || strconv.Itoa(int(cp.ContainerPort)) == p.TargetPort.String()
		}) {
			t.Errorf("Service port %s targets %s, which the api container does not expose", p.Name, p.TargetPort.String())
		}
	}
}

// envExampleNames are the variables .env.example lists; a test in
// internal/config keeps that file equal to what the binaries read.
func envExampleNames(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(?:#\s*)?([A-Z][A-Z0-9_]*)=`)
	names := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		names[m[1]] = true
	}
	return names
}

var secretNames = []string{"JOB_ENCRYPTION_KEY", "PROXY_API_TOKEN", "ADMIN_TOKEN", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY"}

func TestConfigMapAndSecret(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	known := envExampleNames(t)
	cm, secret := m.configMaps["prefect-proxy"], m.secrets["prefect-proxy"]
	if cm == nil || secret == nil {
		t.Fatal("want ConfigMap prefect-proxy and Secret prefect-proxy (secret.example.yaml)")
	}
	for k := range cm.Data {
		if !known[k] {
			t.Errorf("ConfigMap key %s is not a variable of .env.example (misspelt?)", k)
		}
		if slices.Contains(secretNames, k) || strings.Contains(k, "KEY") || strings.Contains(k, "TOKEN") || strings.Contains(k, "AUTH") {
			t.Errorf("ConfigMap holds %s, which belongs in the Secret", k)
		}
	}
	var keys []string
	for k := range secret.StringData {
		keys = append(keys, k)
	}
	for k := range secret.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := slices.Clone(secretNames)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("Secret template keys %v, want %v", keys, want)
	}
	// An unedited template must not start: its key is not a valid key.
	if k, err := base64.StdEncoding.DecodeString(secret.StringData["JOB_ENCRYPTION_KEY"]); err == nil && len(k) == 32 {
		t.Errorf("the template's JOB_ENCRYPTION_KEY is a usable key; it must be a placeholder")
	}
	for _, k := range []string{"PROXY_API_TOKEN", "ADMIN_TOKEN", "PREFECT_NOTIFICATIONS_WEBHOOK_KEY"} {
		if v := secret.StringData[k]; v != "" {
			t.Errorf("template %s = %q: a token that looks set but is public is worse than none", k, v)
		}
	}
}

// queueNames reads the asynq queue names the service declares.
func queueNames(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile("../internal/jobs/runtime.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(Queue[A-Z][a-z]+)\s*=\s*"([a-z]+)"`).FindAllStringSubmatch(string(src), -1) {
		out[m[1]] = m[2]
	}
	return out
}

func TestScaledObjectWatchesThePendingQueues(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	so := m.scaledObjects["prefect-proxy-worker"]
	if so == nil {
		t.Fatal("no ScaledObject prefect-proxy-worker")
	}
	ref := so.Spec.ScaleTargetRef
	if ref == nil || m.deployments[ref.Name] == nil || ref.Name != "prefect-proxy-worker" || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Errorf("scaleTargetRef %+v must name the worker Deployment", ref)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
		t.Errorf("minReplicaCount must be >= 1: relay deliveries and the reconciler need a worker with empty queues")
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
		t.Errorf("maxReplicaCount must be set and >= minReplicaCount")
	}
	if so.Spec.IdleReplicaCount != nil {
		t.Errorf("idleReplicaCount would scale the workers to zero")
	}

	redisURL, err := url.Parse(m.configMaps["prefect-proxy"].Data["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(redisURL.Path, "/")
	if db == "" {
		db = "0"
	}
	queues := queueNames(t)
	want := []string{pendingKey(queues["QueueCritical"]), pendingKey(queues["QueueDefault"])}
	var lists []string
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "redis" {
			t.Errorf("trigger %s: type %s, want redis (lists)", tr.Name, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !slices.Contains(redisScalerParams, k) {
				t.Errorf("trigger %s: %s is not a parameter of KEDA's redis scaler", tr.Name, k)
			}
		}
		md := tr.Metadata
		if md["address"] != redisURL.Host || md["databaseIndex"] != db {
			t.Errorf("trigger %s reads %s db %s; the workers use REDIS_URL %s", tr.Name, md["address"], md["databaseIndex"], redisURL.Redacted())
		}
		if n, err := strconv.Atoi(md["listLength"]); err != nil || n < 1 {
			t.Errorf("trigger %s: listLength %q must be a positive integer", tr.Name, md["listLength"])
		}
		lists = append(lists, md["listName"])
	}
	slices.Sort(lists)
	slices.Sort(want)
	if !slices.Equal(lists, want) {
		t.Errorf("triggers watch %v, want %v", lists, want)
	}
}
