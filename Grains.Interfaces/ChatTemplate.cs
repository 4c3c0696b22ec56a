namespace TauCluster.Grains;

[GenerateSerializer, Immutable]
public sealed record ChatTurn([property: Id(0)] string Role, [property: Id(1)] string Content);

/// <summary>
/// The plain chat template every TauCluster front end shares (HTTP, IChatClient, <c>tau chat</c>); session grains
/// render it, clients send turns:
/// <code>
/// System: …\n
/// User: …\n
/// Assistant:…\n      (the reply exactly as generated)
/// Assistant:
/// </code>
/// A reply stops at <see cref="TurnStop"/>, the start of the next user turn. A reply sent back verbatim renders to
/// the text the session already holds, so a follow-up request only prefills its new turn; where a reply was cut
/// (another stop sequence), the session keeps what still agrees and forgets the rest.
/// </summary>
public static class ChatTemplate
{
    public const string TurnStop = "\nUser:";

    public static string Render(IEnumerable<ChatTurn> turns)
    {
        var text = new System.Text.StringBuilder();
        foreach (var turn in turns)
        {
            string role = RoleName(turn.Role);
            // A reply is whatever the model wrote after "Assistant:", so it goes back verbatim; other turns get one space.
            text.Append(role).Append(role == "Assistant" ? ":" : ": ").Append(turn.Content).Append('\n');
        }
        return text.Append("Assistant:").ToString();
    }

    /// <summary>Refuses a role the template does not know, naming it (before a request changes anything).</summary>
    public static void Validate(IEnumerable<ChatTurn> turns)
    {
        foreach (var turn in turns) RoleName(turn.Role);
    }

    /// <summary>
    /// The text that continues a conversation whose session holds <paramref name="held"/> with new turns. A reply that
    /// stopped at <see cref="TurnStop"/> left "\nUser:" in the session, so the next user turn goes on from there; a
    /// reply cut by its token budget gets a line break first.
    /// </summary>
    public static string After(string held, IEnumerable<ChatTurn> turns)
    {
        string next = Render(turns);
        const string userTurn = "User:";   // TurnStop without its line break
        if (held.Length == 0 || held.EndsWith('\n')) return next;
        return held.EndsWith(TurnStop, StringComparison.Ordinal) && next.StartsWith(userTurn, StringComparison.Ordinal)
            ? next[userTurn.Length..]
            : "\n" + next;
    }

    private static string RoleName(string role) => role.ToLowerInvariant() switch
    {
        "system" or "developer" => "System",
        "user" => "User",
        "assistant" => "Assistant",
        _ => throw new InvalidOptionsException($"unknown message role '{role}' (system, user or assistant)"),
    };
}
