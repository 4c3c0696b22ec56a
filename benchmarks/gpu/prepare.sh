#!/usr/bin/env bash
# Builds what benchmarks/gpu/run.sh needs on a GPU machine that has no .NET (the device machines here have none and
# reach no package registry), into .gpu/ (git-ignored), which the device tool carries:
#   .gpu/dotnet-runtime.tar.xz   the .NET runtime this machine runs (no SDK: nothing is compiled there)
#   .gpu/tau.tar.xz              tau, published (Release), and the Engine tests with xunit's console runner
#   .gpu/shared/manifolds/…      the real manifold, where the tests look for it (a shared/ folder above them)
# Then, through the device tool:  run(command="bash benchmarks/gpu/run.sh", carry=[".gpu"], timeout_s=570)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu
rm -rf "$out" && mkdir -p "$out/build"

dotnet publish Client -c Release -o "$out/build/tau" --nologo -v q
dotnet build tests/Engine.Tests -c Release -o "$out/build/engine-tests" --nologo -v q
# xunit's console runner (2.4.1, what the NuGet mirror has; it runs xunit 2.9 tests) from the package cache.
runner_project=$(mktemp -d)
cat >"$runner_project/r.csproj" <<'PROJECT'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net10.0</TargetFramework><ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally></PropertyGroup>
  <ItemGroup><PackageReference Include="xunit.runner.console" Version="2.4.1" /></ItemGroup>
</Project>
PROJECT
dotnet restore "$runner_project/r.csproj" --nologo -v q
cp -r "${NUGET_PACKAGES:-$HOME/.nuget/packages}/xunit.runner.console/2.4.1/tools/netcoreapp2.0" "$out/build/xunit-runner"
rm -rf "$runner_project"

manifold=../shared/manifolds/cve-minilm-384
if [ -d "$manifold" ]; then mkdir -p "$out/shared/manifolds" && cp -r "$manifold" "$out/shared/manifolds/"; fi

dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
runtime=$(ls -d "$dotnet_root"/shared/Microsoft.NETCore.App/10.* | sort -V | tail -1)
tar -C "$dotnet_root" -cJf "$out/dotnet-runtime.tar.xz" dotnet host "shared/Microsoft.NETCore.App/$(basename "$runtime")"
tar -C "$out/build" -cJf "$out/tau.tar.xz" tau engine-tests xunit-runner
rm -rf "$out/build"
du -sh "$out"/* | sed 's/^/  /'
echo "ready: carry .gpu (64 MiB at most with the working tree; this is $(du -sm "$out" | cut -f1) MiB)"
