#!/usr/bin/env bash
# Builds the OpenTelemetry Collector that the interop `otel` group sends the router's spans to, from the
# Go module proxy, into the peers cache (never into the repository), as build-kube.sh builds
# kube-apiserver. The collector's own distributions (otelcorecol, otelcol) are not installable with
# `go install` (their go.mod files replace modules by local paths), so this builds a tiny wrapper module
# made here: the collector core's command with its OTLP receiver, batch processor, and the debug and
# OTLP/HTTP exporters, which is what a collector configured for traces runs. Pinned version, built once
# (a marker names what was built).
# Usage: build-otelcol.sh <out dir>   (prints the binary's path on success)
set -euo pipefail

COLLECTOR_VERSION=v0.165.0
# the collector's stable modules (component, confmap and its providers) are versioned apart: v1.71.0
# is the release of v0.165.0
STABLE_VERSION=v1.71.0

OUT="${1:?usage: build-otelcol.sh <out dir>}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

bin="$OUT/otelcol-$COLLECTOR_VERSION/otelcol"
[[ -x "$bin" && "$(cat "$bin.built" 2>/dev/null)" == "$COLLECTOR_VERSION" ]] && { echo "$bin"; exit 0; }
src="$OUT/otelcol-$COLLECTOR_VERSION/src"
mkdir -p "$src"
cat >"$src/go.mod" <<MOD
module switchyard.local/otelcol

go 1.24

require (
	go.opentelemetry.io/collector/component $STABLE_VERSION
	go.opentelemetry.io/collector/confmap $STABLE_VERSION
	go.opentelemetry.io/collector/confmap/provider/envprovider $STABLE_VERSION
	go.opentelemetry.io/collector/confmap/provider/fileprovider $STABLE_VERSION
	go.opentelemetry.io/collector/confmap/provider/yamlprovider $STABLE_VERSION
	go.opentelemetry.io/collector/exporter/debugexporter $COLLECTOR_VERSION
	go.opentelemetry.io/collector/exporter/otlphttpexporter $COLLECTOR_VERSION
	go.opentelemetry.io/collector/otelcol $COLLECTOR_VERSION
	go.opentelemetry.io/collector/processor/batchprocessor $COLLECTOR_VERSION
	go.opentelemetry.io/collector/receiver/otlpreceiver $COLLECTOR_VERSION
	go.opentelemetry.io/collector/service $COLLECTOR_VERSION
)
MOD
cat >"$src/main.go" <<'GO'
// A minimal OpenTelemetry Collector for traces: OTLP in, debug and OTLP/HTTP out, built from the
// collector core's modules so the interop needs no release download.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
	var f otelcol.Factories
	var err error
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Processors, err = otelcol.MakeFactoryMap[processor.Factory](batchprocessor.NewFactory()); err != nil {
		return f, err
	}
	f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](debugexporter.NewFactory(), otlphttpexporter.NewFactory())
	f.Telemetry = otelconftelemetry.NewFactory()
	return f, err
}

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol", Description: "switchyard interop collector", Version: "VERSION"},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					fileprovider.NewFactory(), envprovider.NewFactory(), yamlprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
sed -i "s/\"VERSION\"/\"${COLLECTOR_VERSION#v}\"/" "$src/main.go"
t0=$SECONDS
(cd "$src" && go mod tidy >&2 && go build -o "$bin" . >&2)
echo "otelcol $COLLECTOR_VERSION built in $((SECONDS - t0)) s ($(du -h "$bin" | cut -f1))" >&2
echo "$COLLECTOR_VERSION" >"$bin.built"
echo "$bin"
