#!/usr/bin/env bash
# Writes the .meta file Unity needs for each file and folder of the package that lacks one (a
# package added by git URL is read-only, and Unity ignores an asset there without its .meta).
# Each gets a new random GUID; existing .meta files are kept (their GUIDs must never change).
# The Rust test (server/tests/clients.rs) checks that none is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
guid() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
find . -mindepth 1 \( -name '*~' -o -name '.*' \) -prune -o -print | while read -r path; do
  case "$path" in *.meta) continue ;; esac
  meta="$path.meta"
  [ -e "$meta" ] && continue
  if [ -d "$path" ]; then
    printf 'fileFormatVersion: 2\nguid: %s\nfolderAsset: yes\nDefaultImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$(guid)" >"$meta"
  else
    case "$path" in
      *.cs) printf 'fileFormatVersion: 2\nguid: %s\nMonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n  defaultReferences: []\n  executionOrder: 0\n  icon: {instanceID: 0}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$(guid)" >"$meta" ;;
      *.asmdef) printf 'fileFormatVersion: 2\nguid: %s\nAssemblyDefinitionImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$(guid)" >"$meta" ;;
      *) printf 'fileFormatVersion: 2\nguid: %s\nTextScriptImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n' "$(guid)" >"$meta" ;;
    esac
  fi
  echo "wrote $meta"
done
