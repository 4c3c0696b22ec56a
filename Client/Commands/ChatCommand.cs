using System.CommandLine;
using System.Text.Json;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau chat</c>: an interactive conversation that keeps its session across turns. Each line is one user turn, which
/// the session renders with the plain chat template "User: …\nAssistant:"; the reply stops at the next "\nUser:".
/// </summary>
internal static class ChatCommand
{
    private static readonly Option<string> Model = ModelOption(ModelStore.DefaultName);
    private static readonly Option<string> Session = SessionOption();
    private static readonly Option<string> Domain = DomainOption();
    private static readonly Option<int> MaxTokens = Number("--max-tokens", "N", "reply tokens at most per turn", 64);
    private static readonly SamplingFlags Sampling = new();
    private static readonly ClusterFlags Cluster = new();

    public static Command Command()
    {
        var command = new Command("chat", "an interactive conversation, a line per user turn, in a session kept across turns (/reset, /fork [ID], /info, /quit)")
        {
            Model, Session, Domain, MaxTokens,
        };
        Sampling.AddTo(command);
        Cluster.AddTo(command);
        command.SetAction(Run);
        return command;
    }

    private static async Task<int> Run(ParseResult r, CancellationToken cancellation)
    {
        int maxTokens = AtLeastOne(r.GetValue(MaxTokens), "--max-tokens");
        var sampling = Sampling.Settings(r);
        string sessionId = SessionId(r.GetValue(Session));
        await using var cluster = await Cluster.Connect(r, r.GetValue(Model)!, r.GetValue(Domain), cancellation);
        var sessions = cluster.Connection.Sessions;
        var spec = new SessionSpec(cluster.Model, cluster.Domain, sampling);
        await sessions.Open(sessionId, spec, cancellation);
        Progress($"session {sessionId} — type a message; /reset, /fork [ID], /info, /quit", always: true);

        while (!cancellation.IsCancellationRequested)
        {
            try
            {
                if (!await ChatTurn()) break;
            }
            catch (Exception e) when (e is TauException or UsageException)
            {
                Console.WriteLine($"(error: {e.Message})");   // a bad line costs that line, not the conversation
            }
        }
        return 0;

        async Task<bool> ChatTurn()
        {
            Console.Error.Write("you> ");
            string? line = Console.ReadLine();
            if (line is null || line.Trim() is "/quit" or "/exit") return false;
            line = line.Trim();
            if (line.Length == 0) return true;
            switch (line.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries))
            {
                case ["/reset"]:
                    await sessions.Session(sessionId).Reset();
                    Console.WriteLine("(session reset)");
                    return true;
                case ["/fork", .. var rest]:
                    string child = rest.Length > 0 ? Names.Require("session", rest[0].Trim()) : NewSessionId();
                    var forked = await sessions.Session(sessionId).Fork(child);
                    Console.WriteLine($"(forked into {forked.Session} at {forked.Length} tokens; continuing in {sessionId})");
                    return true;
                case ["/info"]:
                    Console.WriteLine(JsonSerializer.Serialize(await sessions.Info(sessionId, cancellation), SnakeCase));
                    return true;
                case [var command, ..] when command.StartsWith('/'):
                    Console.WriteLine($"(unknown command {command}; /reset, /fork [ID], /info, /quit)");
                    return true;
            }
            // The session renders the turn after what it holds (the template's place is its to know) and stops at the next user turn.
            var turn = new CompletionRequest(spec, PromptInput.FromTurns(new ChatTurn("user", line)), maxTokens);
            Console.Write("tau>");
            await foreach (var chunk in sessions.Complete(sessionId, turn, cancellation))
            {
                Console.Write(chunk.Text);
                Console.Out.Flush();
            }
            Console.WriteLine();
            return true;
        }
    }
}
