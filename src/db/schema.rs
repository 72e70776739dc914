//! Diesel table definitions. Written by hand to match `migrations/postgres` and `migrations/sqlite`
//! (identical column types in both, so one `MultiConnection` schema serves both backends).

diesel::table! {
    system_settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        token -> BigInt,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        sessions_valid_after -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        user_id -> Text,
        family_id -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        user_id -> Nullable<Text>,
        expires_at -> Timestamp,
        revoked_at -> Timestamp,
    }
}

diesel::table! {
    experiments (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        phase -> Text,
        spec -> Text,
        baseline_config -> Nullable<Text>,
        candidate_config -> Nullable<Text>,
        results -> Nullable<Text>,
        deployment_id -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        measuring_from -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        target_agents -> Nullable<Text>,
        phase_reason -> Nullable<Text>,
    }
}

diesel::table! {
    experiment_events (id) {
        id -> Text,
        experiment_id -> Text,
        event_type -> Text,
        from_phase -> Nullable<Text>,
        to_phase -> Nullable<Text>,
        message -> Text,
        data -> Nullable<Text>,
        actor -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    pipeline_templates (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        body -> Text,
        parameters -> Text,
        builtin -> Bool,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    pipeline_deployments (id) {
        id -> Text,
        name -> Text,
        template -> Nullable<Text>,
        pipeline -> Text,
        target -> Text,
        rollout -> Text,
        status -> Text,
        current_version -> Integer,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        deleted_at -> Nullable<Timestamp>,
        status_detail -> Nullable<Text>,
        resumed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    deployment_versions (id) {
        id -> Text,
        deployment_id -> Text,
        version -> Integer,
        pipeline -> Text,
        config -> Text,
        config_hash -> Text,
        status -> Text,
        rollback_from_version -> Nullable<Integer>,
        notes -> Text,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    deployment_events (id) {
        id -> Text,
        deployment_id -> Text,
        event_type -> Text,
        version -> Nullable<Integer>,
        message -> Text,
        data -> Nullable<Text>,
        actor -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        hostname -> Text,
        labels -> Text,
        credential_hash -> Text,
        state -> Text,
        agent_version -> Nullable<Text>,
        last_heartbeat_at -> Nullable<Timestamp>,
        resources -> Nullable<Text>,
        pipelines -> Nullable<Text>,
        enrolled_at -> Timestamp,
        updated_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    agent_enrollment_tokens (id) {
        id -> Text,
        token_hash -> Text,
        labels -> Text,
        uses_left -> Integer,
        expires_at -> Timestamp,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        agent_id -> Text,
        task_type -> Text,
        payload -> Text,
        priority -> Integer,
        status -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        idempotency_key -> Nullable<Text>,
        not_before -> Timestamp,
        lease_expires_at -> Nullable<Timestamp>,
        progress -> Nullable<Text>,
        result -> Nullable<Text>,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        dispatched_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    metric_samples (id) {
        id -> Text,
        experiment_id -> Nullable<Text>,
        agent_id -> Text,
        pipeline -> Text,
        variant -> Nullable<Text>,
        metric -> Text,
        value -> Double,
        labels -> Text,
        sampled_at -> Timestamp,
        received_at -> Timestamp,
        batch_seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    cardinality_snapshots (id) {
        id -> Text,
        experiment_id -> Nullable<Text>,
        agent_id -> Nullable<Text>,
        pipeline -> Text,
        variant -> Nullable<Text>,
        metric -> Text,
        series -> BigInt,
        by_label -> Text,
        captured_at -> Timestamp,
    }
}

diesel::table! {
    agent_nats_keys (public_key) {
        public_key -> Text,
        agent_id -> Text,
        issued_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        at -> Timestamp,
        actor_kind -> Text,
        actor_id -> Nullable<Text>,
        actor_name -> Nullable<Text>,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        status -> Nullable<Integer>,
        client -> Nullable<Text>,
        request_id -> Nullable<Text>,
        detail -> Nullable<Text>,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(experiment_events -> experiments (experiment_id));
diesel::joinable!(deployment_versions -> pipeline_deployments (deployment_id));
diesel::joinable!(deployment_events -> pipeline_deployments (deployment_id));
diesel::joinable!(tasks -> agents (agent_id));

diesel::allow_tables_to_appear_in_same_query!(
    system_settings,
    leases,
    users,
    refresh_tokens,
    revoked_tokens,
    experiments,
    experiment_events,
    pipeline_templates,
    pipeline_deployments,
    deployment_versions,
    deployment_events,
    agents,
    agent_nats_keys,
    audit_log,
    agent_enrollment_tokens,
    tasks,
    metric_samples,
    cardinality_snapshots,
);
