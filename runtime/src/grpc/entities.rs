//! `huddle.v1.Entities`.

use huddle_core::{NewDepartment, NewEntity};
use huddle_proto::v1::{self, entities_server::Entities};
use huddle_storage::{DepartmentUpdate, EntityUpdate, PageRequest};
use tonic::{Request, Response, Status};

use super::Services;

pub struct EntitiesService(pub(super) Services);

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Entities for EntitiesService {
    async fn create_entity(&self, req: Request<v1::CreateEntityRequest>) -> Reply<v1::Entity> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let new = NewEntity {
            name: r.name,
            kind: r.r#type,
            default_instructions: r.default_instructions,
            max_participants: r.max_participants,
            recording_retention_days: r.recording_retention_days,
        };
        Ok(Response::new(api.create_entity(new).await?.into()))
    }

    async fn get_entity(&self, req: Request<v1::GetEntityRequest>) -> Reply<v1::Entity> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(api.get_entity(&req.into_inner().id).await?.into()))
    }

    async fn list_entities(&self, req: Request<v1::ListEntitiesRequest>) -> Reply<v1::ListEntitiesResponse> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let page = api.list_entities(PageRequest { size: r.page_size, token: r.page_token }).await?;
        Ok(Response::new(v1::ListEntitiesResponse {
            entities: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn update_entity(&self, req: Request<v1::UpdateEntityRequest>) -> Reply<v1::Entity> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let update = EntityUpdate {
            name: r.name,
            kind: r.r#type,
            default_instructions: r.default_instructions,
            max_participants: r.max_participants,
            recording_retention_days: r.recording_retention_days,
            active: r.active,
        };
        Ok(Response::new(api.update_entity(&r.id, update).await?.into()))
    }

    async fn create_department(&self, req: Request<v1::CreateDepartmentRequest>) -> Reply<v1::Department> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let new = NewDepartment { entity_id: r.entity_id, name: r.name, instructions: r.instructions };
        Ok(Response::new(api.create_department(new).await?.into()))
    }

    async fn list_departments(&self, req: Request<v1::ListDepartmentsRequest>) -> Reply<v1::ListDepartmentsResponse> {
        let api = self.0.api(&req).await?;
        let list = api.list_departments(&req.into_inner().entity_id).await?;
        Ok(Response::new(v1::ListDepartmentsResponse { departments: list.into_iter().map(Into::into).collect() }))
    }

    async fn update_department(&self, req: Request<v1::UpdateDepartmentRequest>) -> Reply<v1::Department> {
        let api = self.0.api(&req).await?;
        let r = req.into_inner();
        let update = DepartmentUpdate { name: r.name, instructions: r.instructions };
        Ok(Response::new(api.update_department(&r.id, update).await?.into()))
    }

    async fn create_api_key(&self, req: Request<v1::CreateApiKeyRequest>) -> Reply<v1::CreateApiKeyResponse> {
        let api = self.0.api(&req).await?;
        let (key, secret) = api.create_api_key(&req.into_inner().entity_id).await?;
        Ok(Response::new(v1::CreateApiKeyResponse { api_key: Some(key.into()), secret }))
    }

    async fn list_api_keys(&self, req: Request<v1::ListApiKeysRequest>) -> Reply<v1::ListApiKeysResponse> {
        let api = self.0.api(&req).await?;
        let keys = api.list_api_keys(&req.into_inner().entity_id).await?;
        Ok(Response::new(v1::ListApiKeysResponse { api_keys: keys.into_iter().map(Into::into).collect() }))
    }

    async fn revoke_api_key(&self, req: Request<v1::RevokeApiKeyRequest>) -> Reply<v1::ApiKey> {
        let api = self.0.api(&req).await?;
        Ok(Response::new(api.revoke_api_key(&req.into_inner().id).await?.into()))
    }
}
