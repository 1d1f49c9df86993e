#!/usr/bin/env bash
# Builds the C# client and its test runner with Mono's C# compiler (Debian: mono-complete):
#   <out>/Firefly.Client.dll         the library (clients/csharp/Runtime)
#   <out>/FireflyClientTests.exe     the tests and the load generator (clients/csharp/Tests~)
# Usage: clients/csharp/Tests~/build.sh [out dir, default clients/csharp/bin~]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/bin~}
mkdir -p "$out"
# C# 7.2 (what mcs speaks): the library must also build with Unity's and .NET's compilers.
mcs -target:library -langversion:7.2 -warnaserror+ -optimize+ -debug -nologo \
  -out:"$out/Firefly.Client.dll" "$here"/Runtime/*.cs
mcs -target:exe -langversion:7.2 -warnaserror+ -nowarn:4014 -debug -nologo \
  -r:"$out/Firefly.Client.dll" -r:System.Json.dll -r:System.Net.Http.dll \
  -out:"$out/FireflyClientTests.exe" "$here"/Tests~/*.cs
