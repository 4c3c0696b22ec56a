using System.Text.Json;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary><c>tau sessions info|fork|delete</c>: a session kept by the cluster, looked at, copied or removed.</summary>
internal static class SessionsCommand
{
    public const string Usage = """
        tau sessions info|delete ID [--cluster …]
        tau sessions fork ID NEW_ID [--cluster …]
        """;

    public static async Task<int> Run(string verb, IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var positional = args.TakeWhile(x => !x.StartsWith("--", StringComparison.Ordinal)).ToArray();
        var a = new ParsedArguments(args.Skip(positional.Length).ToList(), ClusterOptionNames, []);
        var (id, child) = (verb, positional) switch
        {
            ("info" or "delete", [var s]) => (s, null),
            ("fork", [var s, var c]) => (s, c),
            ("info" or "delete" or "fork", _) => throw new UsageException($"usage: tau sessions {verb} ID{(verb == "fork" ? " NEW_ID" : "")} [--cluster …]"),
            _ => throw new UsageException($"unknown sessions command '{verb}' (info, fork, delete)"),
        };
        Names.Require("session", id);
        await using var cluster = await Connect(a, cancellation, resolveModel: false);
        var session = cluster.Connection.Sessions.Session(id);
        var info = await cluster.Connection.Sessions.Info(id, cancellation);
        if (verb != "info" && !info.Exists) throw new UnknownNameException("session", id);
        switch (verb)
        {
            case "info":
                Console.WriteLine(JsonSerializer.Serialize(info, SnakeCase));
                break;
            case "fork":
                Console.WriteLine(JsonSerializer.Serialize(await session.Fork(Names.Require("session", child!)), SnakeCase));
                break;
            default:
                await session.Delete();
                Console.WriteLine($"deleted {id}");
                break;
        }
        return 0;
    }
}
