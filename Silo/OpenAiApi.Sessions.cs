using System.Text.Json.Nodes;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>TauCluster's extension to the API: a session (the <c>session</c> of a request) read, forked or deleted by its id.</summary>
public static partial class OpenAiApi
{
    private static void MapSessionsApi(this RouteGroupBuilder api)
    {
        api.MapGet("/sessions/{id}", async (string id, IGrainFactory grains) =>
        {
            var info = await new TauSessionClient(grains).Info(Names.Require("session", id));   // rides out a silo's loss, as a reader would
            return info.Exists ? Results.Json(info, JsonOptions) : throw new UnknownNameException("session", id);
        })
            .WithSummary("A session: its model, domain, length, cache bytes and silo (TauCluster's extension)").Produces<SessionInfo>();
        api.MapPost("/sessions/{id}/fork", async (string id, HttpContext http, IGrainFactory grains) =>
        {
            string child = String(await ReadObject(http), "id") ?? throw new ApiError(400, "id (the new session's) is required", "id");
            var session = await Existing(grains, id);
            return Results.Json(await session.Fork(Names.Require("session", child)), JsonOptions);
        }).WithSummary("Copies a session into a new one, {\"id\": NEW_ID}, which continues from the same cache (TauCluster's extension); 409 if NEW_ID exists")
            .TakesJson().Produces<SessionInfo>().Produces<ErrorDocument>(409);
        api.MapDelete("/sessions/{id}", async (string id, IGrainFactory grains) =>
        {
            await (await Existing(grains, id)).Delete();
            return Results.Json(new JsonObject { ["id"] = id, ["object"] = "session", ["deleted"] = true });
        }).WithSummary("Deletes a session and its caches (TauCluster's extension)").Produces<JsonObject>();
    }

    /// <summary>The session of that id; 404 if it does not exist.</summary>
    private static async Task<ISessionGrain> Existing(IGrainFactory grains, string id)
    {
        var session = grains.GetGrain<ISessionGrain>(Names.Require("session", id));
        return (await session.GetInfo()).Exists ? session : throw new UnknownNameException("session", id);
    }
}
