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
# Every type the library uses must be in .NET Standard 2.1 (what Unity and Godot load): the
# types Mono's netstandard facade (version 2.1) forwards. (Members are not checked: no reference
# assembly of .NET Standard ships with Debian.)
facade=/usr/lib/mono/4.5/Facades/netstandard.dll
command -v monodis >/dev/null && [ -f $facade ] \
  || { echo "build.sh: monodis and $facade are needed (Debian: mono-complete)" >&2; exit 1; }
monodis --exported $facade | sed -n 's/^[0-9]*: \(.*\) is in assemblyref.*/\1/p' | sort -u >"$out/netstandard.types"
monodis --typeref "$out/Firefly.Client.dll" | sed -n 's/^[0-9]*: \[[^]]*\]//p' | sed 's|/.*||' | sort -u >"$out/used.types"
outside=$(comm -23 "$out/used.types" "$out/netstandard.types")
[ -z "$outside" ] || { echo "build.sh: Firefly.Client uses types outside .NET Standard 2.1: $outside" >&2; exit 1; }
# Nothing IL2CPP cannot compile ahead of time: no Reflection.Emit, no `dynamic`, no expression
# trees (Type.Name in messages is all the reflection it uses).
aot=$(grep -E '^(System\.Reflection\.Emit|Microsoft\.CSharp|System\.Linq\.Expressions|System\.Dynamic)' "$out/used.types" || true)
[ -z "$aot" ] || { echo "build.sh: Firefly.Client uses what IL2CPP may not compile: $aot" >&2; exit 1; }
mcs -target:exe -langversion:7.2 -warnaserror+ -nowarn:4014 -debug -nologo \
  -r:"$out/Firefly.Client.dll" -r:System.Json.dll -r:System.Net.Http.dll \
  -out:"$out/FireflyClientTests.exe" "$here"/Tests~/*.cs
