using System.CommandLine;
using System.Text.Json;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary><c>tau sessions info|fork|delete</c>: a session kept by the cluster, looked at, copied or removed.</summary>
internal static class SessionsCommand
{
    public static Command Command() => Group("sessions", "look at, copy or remove a session kept by the cluster",
        Verb("info", "print the session (its model, length, cache) as JSON", fork: false),
        Verb("delete", "remove the session", fork: false),
        Verb("fork", "copy the session into NEW_ID and print the copy as JSON", fork: true));

    /// <summary>One verb: its session argument (and for fork the new session's), the cluster options, and what it does.</summary>
    private static Command Verb(string verb, string description, bool fork)
    {
        var id = new Argument<string>("ID") { Description = "the session" };
        var child = new Argument<string>("NEW_ID") { Description = "the new session" };
        var cluster = new ClusterFlags();
        var command = new Command(verb, description) { id };
        if (fork) command.Arguments.Add(child);
        cluster.AddTo(command);
        command.SetAction(async (r, cancellation) =>
        {
            string session = Names.Require("session", r.GetValue(id)!);
            string? newSession = fork ? Names.Require("session", r.GetValue(child)!) : null;
            await using var open = await cluster.Connect(r, ModelStore.DefaultName, null, cancellation, resolveModel: false);
            var sessions = open.Connection.Sessions;
            var info = await sessions.Info(session, cancellation);
            if (verb != "info" && !info.Exists) throw new UnknownNameException("session", session);
            Console.WriteLine(verb switch
            {
                "info" => JsonSerializer.Serialize(info, SnakeCase),
                "fork" => JsonSerializer.Serialize(await sessions.Session(session).Fork(newSession!), SnakeCase),
                _ => await Delete(sessions, session),
            });
            return 0;
        });
        return command;
    }

    private static async Task<string> Delete(TauSessionClient sessions, string session)
    {
        await sessions.Session(session).Delete();
        return $"deleted {session}";
    }
}
