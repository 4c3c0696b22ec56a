using System.ComponentModel;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// A network of its own for one test: a Linux bridge in the root namespace and, per member, a network namespace joined
/// to it by a veth pair (one end in the namespace, with the member's address, the other a port of the bridge). No
/// address is on the host, so nothing in the namespaces can reach the host, nor anything else that runs on it, and two
/// runs, at once or one left over, share nothing but the kernel: every name carries a random suffix (a namespace's
/// also the test process's id, so that a later run can tell what a dead one left), and the subnet may be the same in
/// each since their bridges do not meet.
/// </summary>
internal sealed partial class NetworkNamespaces : IDisposable
{
    private const string Subnet = "10.213.7";   // private (10/8), /24
    private static readonly string? Ip = new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }.FirstOrDefault(File.Exists);

    private readonly string suffix = Guid.NewGuid().ToString("N")[..6];
    private readonly List<Member> members = [];
    private readonly Action<string> log;
    private bool bridgeCreated;

    /// <summary>One namespace: its name, its address on the bridge, and the name of its veth end on the bridge.</summary>
    public sealed record Member(string Name, string Namespace, string Address, string BridgePort);

    private NetworkNamespaces(Action<string> log) => this.log = log;

    /// <summary>Linux, root, and iproute2's <c>ip</c>: what making namespaces, veth pairs and bridges takes.</summary>
    public static bool Supported => OperatingSystem.IsLinux() && Environment.IsPrivilegedProcess && Ip is not null;

    /// <summary>Interface names are at most 15 characters: "tn" + 6 + "br" or "p" + the member's index.</summary>
    private string Bridge => $"tn{suffix}br";

    public Member this[string name] => members.Single(m => m.Name == name);

    /// <summary>
    /// The bridge, and a namespace on it per name, each with an address and <c>lo</c> up. What runs of this test left
    /// behind when their process died before it could clean up (namespaces named for a process that is gone) goes first.
    /// </summary>
    public static NetworkNamespaces Create(IReadOnlyList<string> names, Action<string> log)
    {
        RemoveLeftovers(log);
        var network = new NetworkNamespaces(log);
        try
        {
            network.Run("link", "add", network.Bridge, "type", "bridge");
            network.bridgeCreated = true;
            network.Run("link", "set", network.Bridge, "up");
            for (int i = 0; i < names.Count; i++)
            {
                var member = new Member(names[i], $"tn{network.suffix}-{Environment.ProcessId}-{names[i]}", $"{Subnet}.{i + 2}", $"tn{network.suffix}p{i}");
                network.Run("netns", "add", member.Namespace);
                network.members.Add(member);
                network.Run("link", "add", member.BridgePort, "type", "veth", "peer", "name", "eth0", "netns", member.Namespace);
                network.Run("link", "set", member.BridgePort, "master", network.Bridge, "up");
                network.Run("-n", member.Namespace, "address", "add", $"{member.Address}/24", "dev", "eth0");
                network.Run("-n", member.Namespace, "link", "set", "eth0", "up");
                network.Run("-n", member.Namespace, "link", "set", "lo", "up");   // a namespace starts with lo down
            }
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary><c>ip netns exec</c>'s arguments to run <paramref name="file"/> in the member's namespace (ip execs it: the process is the program's own).</summary>
    public static string[] Exec(Member member, string file, params IEnumerable<string> args) => ["netns", "exec", member.Namespace, file, .. args];

    public static string IpCommand => Ip ?? throw new InvalidOperationException("ip is not installed");

    /// <summary>Plugs the member's cable out of the bridge, or back in: its bridge port down or up.</summary>
    public void SetLink(Member member, bool up) => Run("link", "set", member.BridgePort, up ? "up" : "down");

    /// <summary>
    /// An HTTP client whose connections are made from inside the member's namespace: each socket is created on a thread
    /// that has entered the namespace (a socket stays in the namespace it was created in), so the test process needs no
    /// address of its own on the bridge.
    /// </summary>
    public static HttpClient HttpClientIn(Member member, TimeSpan timeout) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, cancellation) =>
        {
            var socket = SocketIn(member.Namespace);
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, cancellation);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    }) { Timeout = timeout };

    private static Socket SocketIn(string networkNamespace)
    {
        Socket? socket = null;
        Exception? failure = null;
        // setns changes the namespace of the calling thread only: a thread of its own, which ends right after.
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle(Path.Combine("/var/run/netns", networkNamespace));
                if (SetNetworkNamespace((int)handle.DangerousGetHandle(), CloneNewNet) != 0)
                    throw new Win32Exception(Marshal.GetLastPInvokeError(), $"setns into {networkNamespace}");
                socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new InvalidOperationException($"no socket in namespace {networkNamespace}", failure);
    }

    private const int CloneNewNet = 0x40000000;

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNetworkNamespace(int fd, int nstype);

    private void Run(params string[] args)
    {
        var (code, text) = RunQuietly(args);
        if (code != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({code}): {text}");
    }

    private static (int Code, string Output) RunQuietly(params string[] args)
    {
        var start = new ProcessStartInfo(IpCommand) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(20)))
        {
            process.Kill();
            return (-1, "timed out");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>
    /// Removes what <see cref="Create"/> made, each part on its own so that one that fails leaves the rest to go:
    /// whatever still runs in a namespace (all of it started by the test) is killed first, since a namespace with a
    /// process in it outlives its name.
    /// </summary>
    public void Dispose()
    {
        foreach (var member in members)
        {
            var (_, pids) = RunQuietly("netns", "pids", member.Namespace);
            foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                try
                {
                    using var process = Process.GetProcessById(int.Parse(pid));
                    process.Kill();
                    process.WaitForExit(TimeSpan.FromSeconds(10));
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or Win32Exception)
                {
                    // gone already
                }
            }
            Remove("netns", "del", member.Namespace);
            if (member.BridgePort.Length > 0 && LinkExists(member.BridgePort)) Remove("link", "del", member.BridgePort);   // goes with its peer, normally
        }
        if (bridgeCreated) Remove("link", "del", Bridge);
        members.Clear();
        bridgeCreated = false;
    }

    /// <summary>Namespaces, with whatever runs in them, and bridges of runs whose process is gone (a namespace's name holds its run's process id).</summary>
    private static void RemoveLeftovers(Action<string> log)
    {
        var (_, list) = RunQuietly("netns", "list");
        var stale = list.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => LeftoverName().Match(line))
            .Where(m => m.Success && !Alive(int.Parse(m.Groups["pid"].Value)))
            .ToList();
        if (stale.Count == 0) return;
        log($"removing {stale.Count} namespaces left by earlier runs: {string.Join(", ", stale.Select(m => m.Value))}");
        var leftover = new NetworkNamespaces(log);
        foreach (var m in stale) leftover.members.Add(new Member("leftover", m.Value, "", ""));
        leftover.Dispose();   // their veths go with them
        foreach (var run in stale.Select(m => m.Groups["suffix"].Value).Distinct())
            if (LinkExists($"tn{run}br")) leftover.Remove("link", "del", $"tn{run}br");

        static bool Alive(int pid)
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                return !process.HasExited;
            }
            catch (ArgumentException)
            {
                return false;
            }
        }
    }

    [GeneratedRegex(@"^tn(?<suffix>[0-9a-f]{6})-(?<pid>\d+)-[a-z0-9]+")]
    private static partial Regex LeftoverName();

    private static bool LinkExists(string name) => RunQuietly("link", "show", name).Code == 0;

    private void Remove(params string[] args)
    {
        var (code, text) = RunQuietly(args);
        if (code != 0) log($"cleanup: ip {string.Join(' ', args)} failed ({code}): {text.Trim()}");
    }
}
